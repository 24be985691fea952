"""The Pusher Channels protocol 7, served by the gateway itself.

Used when PUSHER_URL is unset: websockets at /app/KEY (socket.py), the signed
HTTP API at /apps/APP_ID/... (http_api.py), and publish() for the rest of
the gateway. Events travel through the channel layer, so any process can
publish to sockets held by any web process.
"""

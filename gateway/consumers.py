"""Base classes for the consumers that serve plain HTTP ahead of Django."""

from channels.generic.http import AsyncHttpConsumer

# No layer is configured under this alias.
NO_CHANNEL_LAYER = "none"


class PlainHttpConsumer(AsyncHttpConsumer):
    """An HTTP consumer that does not listen on the channel layer.

    By default every Channels consumer opens a channel of its own and
    listens on it for the whole request, a round trip to Redis that an
    HTTP request answering by itself does not need.
    """

    channel_layer_alias = NO_CHANNEL_LAYER

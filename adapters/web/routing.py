"""Routes of the web channel served ahead of Django's own stack."""

from django.urls import URLPattern

http_urlpatterns: list[URLPattern] = []
websocket_urlpatterns: list[URLPattern] = []

"""Routes of the Facebook channel served ahead of Django's own stack."""

from django.urls import URLPattern, re_path

from adapters.facebook.consumers import FacebookWebhookConsumer

http_urlpatterns: list[URLPattern] = [
    re_path(r"^webhooks/facebook$", FacebookWebhookConsumer.as_asgi()),
]

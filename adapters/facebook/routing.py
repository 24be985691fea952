"""Routes of the Facebook channel served ahead of Django's own stack."""

from django.urls import URLPattern

http_urlpatterns: list[URLPattern] = []

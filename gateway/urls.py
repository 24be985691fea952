"""URLs served by Django's own stack: the admin and the pages around it."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]

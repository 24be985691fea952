"""The web channel's application."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "adapters.web"
    label = "web"

    def ready(self) -> None:
        from adapters.web.privacy import install_address_free_access_log

        install_address_free_access_log()

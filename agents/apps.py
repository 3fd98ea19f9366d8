from typing import Any

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Statehouse agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        setting_changed.connect(_forget_settings, dispatch_uid="statehouse-settings")


def _forget_settings(*, setting: str, **_: Any) -> None:
    if setting.startswith("STATEHOUSE_"):
        from agents.conf import get_settings

        get_settings.cache_clear()

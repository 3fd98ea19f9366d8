from typing import Any

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    # The installed import path is statehouse_agents (the folder is agents/, mapped in
    # pyproject.toml); the label stays "agents", so tables, migrations and permissions keep
    # their names. See docs/packaging.md.
    name = "statehouse_agents"
    label = "agents"
    verbose_name = "Statehouse agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed
        from statehouse_agents import schema_history  # noqa: F401  (registers its check)

        setting_changed.connect(_forget_settings, dispatch_uid="statehouse-settings")


def _forget_settings(*, setting: str, **_: Any) -> None:
    if setting.startswith("STATEHOUSE_"):
        from statehouse_agents.conf import get_settings

        get_settings.cache_clear()

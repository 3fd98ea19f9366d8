"""Two partial indexes the dashboard bench showed missing at 100,000 agents / 1,000,000
steps (bench/README-resume.md, "Dashboard pages"): the list's "waits for input" marker
(`record_waiting_input`) and the overview's LLM usage (`step_llm_usage`)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0020_indoubt_step_policy"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="record",
            index=models.Index(
                condition=models.Q(
                    ("deleted", False), ("value_json__contains", '"waiting":"input"')
                ),
                fields=["agent", "key"],
                name="record_waiting_input",
            ),
        ),
        migrations.AddIndex(
            model_name="step",
            index=models.Index(
                condition=models.Q(
                    models.Q(("model", ""), _negated=True),
                    ("tokens_in__isnull", False),
                    ("tokens_out__isnull", False),
                    ("cost__isnull", False),
                    _connector="OR",
                ),
                fields=["started_at", "agent"],
                name="step_llm_usage",
            ),
        ),
    ]

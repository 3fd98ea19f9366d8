"""Transaction ids made in time order (docs/architecture.md, "Transaction ids").

The default of `Commit.txn_id` becomes `statehouse._ids.new_txn_id` (a UUID of version 7)
instead of `uuid.uuid4`. Django keeps column defaults in Python, so nothing changes in the
database: the operation only tells the migration state (as a plain AlterField, SQLite
would copy the whole commit table to "change" it).
"""

import statehouse._ids
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0004_records_point_at_versions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="commit",
                    name="txn_id",
                    field=models.UUIDField(default=statehouse._ids.new_txn_id, unique=True),
                ),
            ],
        ),
    ]

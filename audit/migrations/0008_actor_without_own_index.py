import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# The index Django made for the foreign key (same name on both databases). Dropped by name: an AlterField would
# rebuild the whole table on SQLite, and with it drop the append-only triggers.
ACTOR_INDEX = "audit_auditlog_actor_id_20e70a27"


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0007_partitions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditlog",
                    name="actor",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{ACTOR_INDEX}"',
                    reverse_sql=f'CREATE INDEX "{ACTOR_INDEX}" ON "audit_auditlog" ("actor_id")',
                ),
            ],
        ),
    ]

from django.db import migrations

from audit import partitions


def partition(apps, schema_editor):  # type: ignore[no-untyped-def]
    # PostgreSQL only: SQLite keeps the entries in one table. The month partitions of the existing rows' months,
    # this month and the next few are made here; `manage.py audit_partitions` keeps making them ahead.
    partitions.convert_to_partitioned(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_retention")]

    # Backwards leaves the table partitioned: it has the very columns, indexes and triggers the earlier schema
    # describes, so nothing before this migration can tell the difference.
    operations = [migrations.RunPython(partition, migrations.RunPython.noop)]

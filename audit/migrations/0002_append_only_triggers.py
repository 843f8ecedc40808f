from django.db import migrations

from audit import triggers

# The tables as they were at this migration; later tables get their triggers in their own migration.
TABLES = ("audit_auditlog", "audit_seal")


def install(apps, schema_editor):  # type: ignore[no-untyped-def]
    triggers.install(schema_editor.connection, TABLES)


def drop(apps, schema_editor):  # type: ignore[no-untyped-def]
    triggers.drop(schema_editor.connection, TABLES)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(install, drop)]

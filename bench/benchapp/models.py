from django.db import models


class Widget(models.Model):
    """The model every scenario saves."""

    name = models.CharField(max_length=100)
    value = models.IntegerField()

    def __str__(self) -> str:
        return self.name


class PlainAudit(models.Model):
    """Baseline (b): the plain audit row a hand-written transaction inserts, with no digest or seal."""

    created_at = models.DateTimeField(auto_now_add=True)
    actor_id = models.BigIntegerField(null=True)
    action = models.CharField(max_length=100)
    entity = models.CharField(max_length=100)
    entity_id = models.CharField(max_length=255)
    changes = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"{self.action} {self.entity} {self.entity_id}"

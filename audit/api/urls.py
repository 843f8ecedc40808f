from django.urls import path

from . import views

app_name = "audit-api"

urlpatterns = [
    path("events", views.AuditEventListApi.as_view(), name="event-list"),
    path("events/batch", views.AuditEventBatchApi.as_view(), name="event-batch"),
    path("events/<int:pk>", views.AuditEventDetailApi.as_view(), name="event-detail"),
    path("verify", views.AuditVerifyApi.as_view(), name="verify"),
    path("digests", views.AuditDigestListApi.as_view(), name="digest-list"),
    path("subjects/<int:user_id>/access", views.SubjectAccessApi.as_view(), name="subject-access"),
]

from django.urls import path

from . import views

app_name = "locks-api"

urlpatterns = [
    path("locks", views.LockListApi.as_view(), name="lock-list"),
    path("locks/<int:pk>/checkin", views.LockCheckinApi.as_view(), name="lock-checkin"),
    path("locks/<int:pk>/force-checkin", views.LockForceCheckinApi.as_view(), name="lock-force-checkin"),
]

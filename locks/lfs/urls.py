from django.urls import path

from . import views

app_name = "lfs"

urlpatterns = [
    path("<slug:repository>/locks", views.LfsLocksApi.as_view(), name="locks"),
    path("<slug:repository>/locks/verify", views.LfsVerifyApi.as_view(), name="verify"),
    path("<slug:repository>/locks/<str:lock_id>/unlock", views.LfsUnlockApi.as_view(), name="unlock"),
]

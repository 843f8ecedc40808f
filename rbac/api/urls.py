from django.urls import path

from . import views

app_name = "rbac-api"

urlpatterns = [
    path("roles", views.RoleListApi.as_view(), name="role-list"),
    path("roles/<int:pk>", views.RoleDetailApi.as_view(), name="role-detail"),
    path("roles/<int:pk>/permissions", views.RolePermissionsApi.as_view(), name="role-permissions"),
    path("groups", views.GroupListApi.as_view(), name="group-list"),
    path("groups/<int:pk>", views.GroupDetailApi.as_view(), name="group-detail"),
    path("groups/<int:pk>/members", views.GroupMembersApi.as_view(), name="group-members"),
    path("groups/<int:pk>/scope", views.GroupScopeApi.as_view(), name="group-scope"),
    path("users/<int:pk>/roles", views.UserRolesApi.as_view(), name="user-roles"),
]

import factory
from django.contrib.auth.models import Group, User

from audit.bootstrap import COMPLIANCE_OFFICERS

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    password = factory.django.Password(PASSWORD)


class OfficerFactory(UserFactory):
    username = factory.Sequence(lambda n: f"officer{n}")
    is_staff = True

    @factory.post_generation
    def officer_group(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            self.groups.add(Group.objects.get(name=COMPLIANCE_OFFICERS))

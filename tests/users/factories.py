from factory.declarations import LazyAttribute, Sequence
from factory.faker import Faker

from app.core.security import Passwords
from app.users.models import User
from tests.factories import AsyncFactory

DEFAULT_PASSWORD = "correct-horse-battery"
# The same cheap parameters the test app uses, so factory users can log in through HTTP.
PASSWORDS = Passwords(time_cost=1, memory_cost=8192, parallelism=1)


class UserFactory(AsyncFactory[User]):
    class Meta:
        model = User

    class Params:
        password = DEFAULT_PASSWORD

    email = Sequence(lambda n: f"user{n}@example.com")
    full_name = Faker("name")
    hashed_password = LazyAttribute(lambda o: PASSWORDS.hash_sync(o.password))
    is_active = True
    is_superuser = False

"""`manage.py load_demo`: the demo market and accounts, printed for the person running it."""

from django.core.management.base import BaseCommand

from dashboard.demo import load_demo


class Command(BaseCommand):
    help = "Create the missing demo symbols and demo trader and admin accounts (existing ones are left as they are)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--symbols-only",
            action="store_true",
            help="Only the demo market (a first production deploy: create the admin with createsuperuser).",
        )

    def handle(self, *args: object, **options: object) -> None:
        created, accounts = load_demo(accounts=not options["symbols_only"])
        self.stdout.write(f"Demo symbols: {created} created.")
        for account in accounts:
            role = "admin" if account.is_staff else "trader"
            if account.created:
                self.stdout.write(f"Demo {role}: username {account.username!r}, password {account.password!r}")
            else:
                self.stdout.write(f"Demo {role}: {account.username!r} already exists, left as it is.")

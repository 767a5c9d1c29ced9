"""No HTTP pages: the naive reference only streams."""

urlpatterns: list = []

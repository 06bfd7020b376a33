from tests.engine import toy_data  # noqa: F401  (registers the `engine-toy` dataset)

from tests.engine import toy_data  # noqa: F401  (registers the `engine-toy` dataset)
from tests.report import probe_model  # noqa: F401  (registers the `report-probe` model)

"""The training tests' marker: ``slow`` tests (a real multi-node Ray cluster) run in every ``pytest -q``."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes, not seconds (a real Ray cluster); still run by default")

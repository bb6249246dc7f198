from tests.sync.conftest import broker

__all__ = ["broker"]

"""Starts ThingsBoard IoT Gateway as its own `thingsboard-gateway` command does (config from $TB_GW_CONFIG_DIR),
with one change: the version check, which posts to updates.thingsboard.io at start-up and every hour from a
thread of its own, does nothing. A benchmark has no business phoning home, and this machine has no network
beyond package registries. Run by the peer's own venv, never by Floorgate's."""

from thingsboard_gateway import tb_gateway  # type: ignore[import-not-found]
from thingsboard_gateway.tb_utility import tb_updater  # type: ignore[import-not-found]


def _no_version_check(self: object) -> None:
    return None


tb_updater.TBUpdater.check_for_new_version = _no_version_check

if __name__ == "__main__":
    tb_gateway.main()

"""Operations on the box: systemd integration, the run lock, doctor, backup/restore, export, support bundle.

These run either inside the gateway (as parts: `SystemdNotifier`, `DailyChecks`) or as short `floorgate`
subcommands a technician types; the subcommands never need the gateway to be stopped, except `restore`.
"""

"""The fork server's preload (gateway/bulkwork.py `context`): importing it makes the server die with the gateway
(gateway/parentdeath.py says why). Only the fork server imports this module: in any other process the import
would tie that process's life to its parent's."""

from gateway.parentdeath import die_with_parent

die_with_parent()

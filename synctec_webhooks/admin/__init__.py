"""The admin service: JSON API under /api/v1 (webhooks, dead letters, accounts, API keys,
portal links, the audit trail), the settings page at /, endpoint health.

`server.AdminServer` is the process role; `api` the routes; `service.AdminService` what
they do. Imports point down only: server -> api -> service.
"""

from synctec_webhooks.admin.server import AdminServer
from synctec_webhooks.admin.service import AdminService, check_token

__all__ = ["AdminServer", "AdminService", "check_token"]

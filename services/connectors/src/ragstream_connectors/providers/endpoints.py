"""Where each provider's API lives: public endpoints by default, local stand-ins in tests.

Operators never need to change these (sovereign clouds aside: Microsoft's national clouds have their own Graph
and login hosts). They are worker settings, never connector config, so a tenant cannot point the worker at an
address of its choosing.
"""

from __future__ import annotations

from pydantic import BaseModel


class ProviderEndpoints(BaseModel):
    # Microsoft Graph v1.0 and the Microsoft identity platform (client credentials flow).
    graph_api_url: str = "https://graph.microsoft.com/v1.0"
    microsoft_login_url: str = "https://login.microsoftonline.com"
    # Box API and its OAuth 2.0 token endpoint (client credentials grant).
    box_api_url: str = "https://api.box.com/2.0"
    box_token_url: str = "https://api.box.com/oauth2/token"
    # Google Drive API v3 and Google's OAuth 2.0 token endpoint (refresh token grant).
    drive_api_url: str = "https://www.googleapis.com/drive/v3"
    google_token_url: str = "https://oauth2.googleapis.com/token"

"""The connector's Dialogflow proxy: the contract's route table, forwarded with the service's Google credentials.

``routes`` decides what may be forwarded and where (pure), ``credentials``
holds the Application Default Credentials and refreshes them off the event
loop, and ``client`` sends the call on a pooled ``httpx.AsyncClient``. The HTTP
endpoint that ties them together behind the desktop JWT is ``connector.http.dialogflow_views``;
the streaming calls over a desktop's socket (``connector.desktops.streaming``) use them too.
"""

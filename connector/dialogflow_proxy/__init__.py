"""The connector's Dialogflow proxy: the contract's route table, forwarded with the service's Google credentials.

``routes`` decides what may be forwarded and where (pure), ``credentials``
holds the Application Default Credentials and refreshes them off the event
loop, ``client`` sends the call on a pooled ``httpx.AsyncClient``, and
``views`` ties them together behind the desktop JWT.
"""

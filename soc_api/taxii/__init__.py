"""TAXII 2.1: the server's collections (server.py; routes in soc_api/routers/taxii.py) and the pulling client."""

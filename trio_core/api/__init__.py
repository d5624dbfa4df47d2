"""Core's ``/api/v3`` routes: processes (``process_routes``), the server-wide system routes
(``system_routes``) and the subsystem serving the latter; import from the modules."""

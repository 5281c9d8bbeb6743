"""Device clients shipped with the studio: a simulator and a serial data forwarder (Django-free)."""

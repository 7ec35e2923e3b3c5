"""The device side: the CertificateManagement service and the gnoicertd daemon."""

"""The operator side: channels, workflows, the local CA and the gnoicert CLI."""

"""I/O shells of the agent: local proxy, tunnel client, enrolment client."""

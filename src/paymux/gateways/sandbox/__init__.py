"""The built-in sandbox gateway: a careful fake processor with Stripe's test cards."""

from paymux.gateways.sandbox.connector import SandboxGateway
from paymux.gateways.sandbox.processor import SandboxProcessor

__all__ = ["SandboxGateway", "SandboxProcessor"]

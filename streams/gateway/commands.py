"""`wardflow hl7`: the HL7 v2 (MLLP) and FHIR R4 gateway, registered with the console script."""

from __future__ import annotations

import argparse


def _hl7(args: argparse.Namespace) -> int:
    from streams.gateway.run import run_gateway
    from streams.gateway.settings import gateway_settings_from_args

    return run_gateway(gateway_settings_from_args(args))


def register(sub: argparse._SubParsersAction) -> None:
    from streams.gateway.settings import add_gateway_arguments

    p = sub.add_parser(
        "hl7", help="HL7 v2 MLLP listener and FHIR R4 endpoint: the hospital's feeds in, contract events out",
        description="Listen for HL7 v2 ADT and ORU^R01 over MLLP (TLS optional) and FHIR R4 Bundles over HTTP, "
                    "publish the contract events to the input topics and answer each message only after the broker "
                    "acknowledged them (AA), or with AE/AR and an ERR segment (OperationOutcome for FHIR) after "
                    "keeping the message on dead-letters. FHIR reads: /fhir/Location, /fhir/Encounter, "
                    "/fhir/CommunicationRequest. The hospital file needs an `hl7:` section (docs/hl7.md).")
    add_gateway_arguments(p)
    p.set_defaults(func=_hl7)

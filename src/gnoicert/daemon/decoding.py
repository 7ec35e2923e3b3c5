"""Method registration whose request decoding never raises (docs/behaviour.md §7).

grpcio decodes a request before any handler runs, and a decoding error ends the call in UNKNOWN
with a traceback in the log and nothing audited. Here undecodable bytes become an `Undecodable`
marker instead: a unary handler is not called, a request stream raises `UndecodableRequest` when
the marker is read, and `refuse` (given per service) authenticates the caller first, audits the
refusal once and ends the call through `errors.abort_with`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import ServiceDescriptor

from gnoicert.daemon import errors
from gnoicert.daemon.audit import AuditLog, AuditRecord, Event, Outcome
from gnoicert.daemon.in_flight import HandlerWrapper
from gnoicert.daemon.listing import reuse_last_encoding
from gnoicert.daemon.service import Gate

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What a request decoder returns for bytes that are not a valid message of its type."""

    type_name: str
    size: int

    def error(self) -> errors.UndecodableRequest:
        return errors.UndecodableRequest(
            f"the request ({self.size} bytes) is not a valid {self.type_name} message"
        )


# refuse(context, rpc, error): authenticate (where the service requires it), audit, abort.
Refuse = Callable[[Context, str, errors.UndecodableRequest], Awaitable[NoReturn]]


def tolerant_decoder(message_type: type[message.Message]) -> Callable[[bytes], object]:
    """message_type.FromString that returns an Undecodable marker instead of raising."""
    type_name = message_type.DESCRIPTOR.full_name

    def decode(data: bytes) -> object:
        try:
            return message_type.FromString(data)
        except (message.DecodeError, ValueError, RecursionError):
            return Undecodable(type_name, len(data))

    return decode


def add_service(
    server: grpc.aio.Server,
    servicer: object,
    service: ServiceDescriptor,
    refuse: Refuse,
    *,
    methods: tuple[str, ...] | None = None,
    wrappers: Sequence[HandlerWrapper] = (),
    registered: Collection[str] = (),
) -> None:
    """Register servicer's methods of service (all, or only `methods`: the rest are then
    UNIMPLEMENTED from grpc itself) with tolerant decoders, each handler inside `wrappers`
    (the first outermost).

    Only the methods whose paths are in `registered` are also grpc "registered methods"; the
    others are found through the generic handler. grpc.aio's server loop waits on one future
    per registered method (plus one for all the rest) on every incoming call, so each one
    registered costs every call a little (docs/platform-notes.md).
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    fast: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        if methods is not None and method.name not in methods:
            continue
        rpc = f"/{service.full_name}/{method.name}"
        decode = tolerant_decoder(message_factory.GetMessageClass(method.input_type))
        encode = reuse_last_encoding(
            message_factory.GetMessageClass(method.output_type).SerializeToString
        )
        behavior = getattr(servicer, method.name)
        kinds = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }
        make = kinds[(method.client_streaming, method.server_streaming)]
        wrapped = _guard(behavior, rpc, refuse, streaming_in=method.client_streaming)
        handler = make(wrapped, request_deserializer=decode, response_serializer=encode)
        for wrapper in reversed(wrappers):
            handler = wrapper.wrap(handler, rpc)
        handlers[method.name] = handler
        if rpc in registered:
            fast[method.name] = handler
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    if fast:
        server.add_registered_method_handlers(service.full_name, fast)


def _guard(behavior: Any, rpc: str, refuse: Refuse, *, streaming_in: bool) -> Any:
    """behavior, with undecodable requests refused through refuse."""
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await refuse(context, rpc, request.error())
            try:
                arg = _checked(request) if streaming_in else request
                async for reply in behavior(arg, context):
                    yield reply
            except errors.UndecodableRequest as exc:  # a servicer that does not refuse itself
                await refuse(context, rpc, exc)

        return stream

    async def call(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await refuse(context, rpc, request.error())
        try:
            arg = _checked(request) if streaming_in else request
            return await behavior(arg, context)
        except errors.UndecodableRequest as exc:
            await refuse(context, rpc, exc)

    return call


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The request stream; a message that did not decode raises UndecodableRequest when read."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.error()
        yield request


def authenticated_refusal(gate: Gate, audit: AuditLog) -> Refuse:
    """For services that admit callers: UNAUTHENTICATED first, then MALFORMED_REQUEST."""

    async def refuse(context: Context, rpc: str, exc: errors.UndecodableRequest) -> NoReturn:
        try:
            caller = await gate.admit(context, rpc)  # audits a refused caller itself
        except Exception as refused:
            await errors.abort_with(context, refused)
        _audit(audit, rpc, caller.peer, caller.identity, exc)
        await errors.abort_with(context, exc)

    return refuse


def open_refusal(audit: AuditLog) -> Refuse:
    """For the services every peer may call (health, reflection)."""

    async def refuse(context: Context, rpc: str, exc: errors.UndecodableRequest) -> NoReturn:
        _audit(audit, rpc, context.peer() or "", "", exc)
        await errors.abort_with(context, exc)

    return refuse


def _audit(
    audit: AuditLog, rpc: str, peer: str, identity: str, exc: errors.UndecodableRequest
) -> None:
    audit.record(
        AuditRecord(
            event=Event.REFUSED,
            rpc=rpc,
            outcome=Outcome.REFUSED,
            peer=peer,
            identity=identity,
            reason=errors.reason_for(exc),
            detail=str(exc),
        )
    )

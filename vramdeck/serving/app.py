"""The aiohttp application: OpenAI's routes over the manager, and the middleware every request
passes (a span and a record, OpenAI-shaped errors, the bearer token, CORS when configured).

Every request for a model holds it (`Admission.hold`, i.e. ``manager.use``) for its whole life,
stream included. Handlers run on the manager's loop; inference runs in the inference workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.errors import InsufficientMemoryError, ModelLoadError
from vramdeck.manager.inference import (
    Abilities,
    Ability,
    GenerationRequest,
    Inference,
    InferenceInputError,
    ModelKind,
)
from vramdeck.manager.model_manager import ModelManager

from . import bodies, catalog
from . import telemetry as tm
from .admission import Admission, Held, NoRoom, QueueFull
from .errors import APIError, ErrorType, bad_request
from .events import Route
from .openai_format import DONE, Answer, embeddings, sse
from .proxy import ClientGone, forward, upstream_of
from .record import RequestRecord
from .settings import ServeSettings

logger = logging.getLogger(__name__)

#: Status reported (in events, spans, metrics) for a client that went away mid-answer.
CLIENT_CLOSED = 499
#: Status reported for a request cut short because the server shut down.
SHUTTING_DOWN = 503
_RECORD = web.RequestKey("record", RequestRecord)
_NEEDS = {Route.CHAT: Ability.CHAT, Route.COMPLETIONS: Ability.COMPLETION,
          Route.EMBEDDINGS: Ability.EMBEDDING}  # fmt: skip
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ServingApp:
    """The routes and middleware for one manager."""

    def __init__(self, manager: ModelManager, settings: ServeSettings, inference: Inference):
        self.manager, self.settings, self.inference = manager, settings, inference
        self.admission = Admission(
            manager, queue_size=settings.queue_size, timeout_s=settings.queue_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._api_key = settings.api_key()

    def application(self) -> web.Application:
        app = web.Application(
            middlewares=[self._observe, self._authorize],
            client_max_size=self.settings.max_body_bytes,
        )
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{name:.+}", self.model)
        app.router.add_post(Route.CHAT.value, self.chat)
        app.router.add_post(Route.COMPLETIONS.value, self.completions)
        app.router.add_post(Route.EMBEDDINGS.value, self.embeddings)
        if self.settings.cors_origins:
            app.router.add_route("OPTIONS", "/{tail:.*}", self.preflight)
            app.on_response_prepare.append(self._cors_headers)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, app: web.Application) -> None:
        self.admission.close()
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The client of proxied requests (no total timeout: streams last as long as they do)."""
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    # ----------------------------------------------------------------- middleware

    @web.middleware
    async def _observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request.match_info.route.resource
        route_name = info.canonical if info is not None else "unmatched"
        route = next((r for r in Route if r.value == route_name), None)
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        host, port = (sockname or ("", 0))[:2]
        attributes: dict[str, str | int] = {
            tm.ATTR_METHOD: request.method, tm.ATTR_ROUTE: route_name, tm.ATTR_PATH: request.path,
            tm.ATTR_SCHEME: request.scheme, tm.ATTR_SERVER_ADDRESS: str(host),
            tm.ATTR_SERVER_PORT: int(port), tm.ATTR_CLIENT_ADDRESS: request.remote or "",
        }  # fmt: skip
        span_name = f"{request.method} {route_name}"
        with tm.tracer().start_as_current_span(
            span_name, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            record = RequestRecord(route, self.manager.events, span)
            request[_RECORD] = record
            status = 500
            try:
                response = await self._answer(request, handler)
                status = response.status
                response.headers.setdefault("X-Request-Id", record.request_id)
                return response
            except asyncio.CancelledError:  # cut by shutdown after drain_timeout_s
                status = SHUTTING_DOWN
                raise
            finally:
                record.finish(status, request.method, route_name)
                if (record.status or status) >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                    span.set_attribute(tm.ATTR_ERROR_TYPE, str(record.status or status))

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except APIError as exc:
            return exc.response()
        except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method
            kind = ErrorType.NOT_FOUND if exc.status == 404 else ErrorType.INVALID_REQUEST
            message = f"{request.method} {request.path}: {exc.reason}"
            return APIError(exc.status, message, type=kind).response()
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            return APIError(500, "internal error; see the server's log",
                            type=ErrorType.SERVER).response()  # fmt: skip

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._api_key is None or request.path == "/health" or request.method == "OPTIONS":
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._api_key.encode()
        ):
            raise APIError(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                           type=ErrorType.AUTHENTICATION, code="invalid_api_key")  # fmt: skip
        return await handler(request)

    def _allowed_origin(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        allowed = self.settings.cors_origins
        return origin if origin and ("*" in allowed or origin in allowed) else None

    async def _cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = self._allowed_origin(request)
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    async def preflight(self, request: web.Request) -> web.Response:
        if self._allowed_origin(request) is None:
            raise APIError(403, "this origin may not call (inference.serving.cors_origins)")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        })  # fmt: skip

    # ----------------------------------------------------------------- listing

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        counts = self.admission.counts
        data = [catalog.task_entry(self.manager, t, counts.get(t)) for t in self.manager.tasks]
        return web.json_response({"object": "list", "data": data})

    async def model(self, request: web.Request) -> web.Response:
        task = catalog.known_task(self.manager, request.match_info["name"])
        return web.json_response(
            catalog.task_entry(self.manager, task, self.admission.counts.get(task))
        )

    # ----------------------------------------------------------------- model routes

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, Route.CHAT, bodies.chat_request)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, Route.COMPLETIONS, bodies.completion_request)

    async def _prepare(
        self, request: web.Request, route: Route
    ) -> tuple[dict[str, Any], str, ModelConfig, Abilities]:
        body = await bodies.read_json(request, self.settings.max_body_bytes)
        name = bodies.model_field(body)
        task, option, abilities = catalog.resolve(self.manager, name)
        needed = _NEEDS[route]
        if needed not in abilities.abilities:
            raise bad_request(
                f"{task} ({option.name}) cannot answer {route.value}: it can do "
                f"{abilities.describe()}",
                param="model", code="model_cannot_do_this",
            )  # fmt: skip
        return body, task, option, abilities

    async def _hold(
        self, stack: contextlib.AsyncExitStack, request: web.Request, task: str, option: str
    ) -> Held:
        retry = {"Retry-After": str(self.settings.retry_after_s)}
        try:
            held = await stack.enter_async_context(self.admission.hold(task))
        except QueueFull as exc:
            raise APIError(429, str(exc), type=ErrorType.RATE_LIMIT, code="queue_full",
                           headers=retry) from None  # fmt: skip
        except (NoRoom, InsufficientMemoryError) as exc:
            raise APIError(503, str(exc), type=ErrorType.OVERLOADED, code="no_room",
                           headers=retry) from None  # fmt: skip
        except ModelLoadError as exc:
            raise APIError(503, f"{task} could not load: {exc.reason}", type=ErrorType.SERVER,
                           code="load_failed") from None  # fmt: skip
        request[_RECORD].began(task, option, held.queue_wait_s)
        return held

    async def _proxied(
        self, request: web.Request, held: Held, route: Route, body: dict[str, Any]
    ) -> web.StreamResponse | None:
        upstream = upstream_of(held.model)
        if upstream is None:
            return None
        path = route.value.removeprefix("/v1")
        try:
            return await forward(request, self.session, upstream, path, body)
        except ClientGone as gone:
            request[_RECORD].status = CLIENT_CLOSED
            return gone.response

    async def _generation(
        self,
        request: web.Request,
        route: Route,
        parse: Callable[[dict[str, Any], ServeSettings], GenerationRequest],
    ) -> web.StreamResponse:
        body, task, option, abilities = await self._prepare(request, route)
        in_process = abilities.kind is ModelKind.CAUSAL_LM
        generation = parse(body, self.settings) if in_process else None
        stream = bodies.wants_stream(body)
        async with contextlib.AsyncExitStack() as stack:
            held = await self._hold(stack, request, task, option.name)
            proxied = await self._proxied(request, held, route, body)
            if proxied is not None:
                return proxied
            assert generation is not None
            answer = Answer(chat=route is Route.CHAT, model=bodies.model_field(body))
            if stream:
                usage = bodies.include_usage(body)
                return await self._stream(request, task, held, generation, answer, usage)
            try:
                result = await self.inference.generate(task, held.model, generation)
            except InferenceInputError as exc:
                raise bad_request(str(exc), param="messages" if answer.chat else "prompt") from None
            request[_RECORD].tokens(result.prompt_tokens, result.completion_tokens)
            return web.json_response(answer.whole(result))

    async def _stream(
        self,
        request: web.Request,
        task: str,
        held: Held,
        generation: GenerationRequest,
        answer: Answer,
        with_usage: bool,
    ) -> web.StreamResponse:
        record = request[_RECORD]
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )

        async def send(data: bytes) -> None:
            if not response.prepared:  # late, so an error before the first token is a 400
                await response.prepare(request)
                if answer.chat:
                    await response.write(sse(answer.chunk(None)))
            await response.write(data)

        stream = self.inference.stream(task, held.model, generation)
        try:
            async for piece in stream:
                record.token()
                await send(sse(answer.chunk(piece)))
            try:
                result = await stream.result()
            except InferenceInputError as exc:
                if response.prepared:
                    raise
                param = "messages" if answer.chat else "prompt"
                raise bad_request(str(exc), param=param) from None
            record.tokens(result.prompt_tokens, result.completion_tokens)
            await send(sse(answer.chunk("", result.finish_reason)))
            if with_usage:
                await send(sse(answer.usage_chunk(result)))
            await send(DONE)
            await response.write_eof()
        except ConnectionResetError:  # the client went away: stop generating, let go
            record.status = CLIENT_CLOSED
        except Exception:
            if not response.prepared:
                raise
            # Too late for a status: end the stream with OpenAI's error object instead.
            logger.exception("generation for %s failed mid-stream", task)
            record.status = 500
            error = APIError(500, "generation failed; see the server's log", type=ErrorType.SERVER)
            with contextlib.suppress(ConnectionResetError):
                await response.write(sse(error.body()))
                await response.write(DONE)
        finally:
            await stream.aclose()
        return response

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body, task, option, abilities = await self._prepare(request, Route.EMBEDDINGS)
        in_process = abilities.kind is ModelKind.ENCODER
        wanted = bodies.embedding_request(body, self.settings) if in_process else None
        async with contextlib.AsyncExitStack() as stack:
            held = await self._hold(stack, request, task, option.name)
            proxied = await self._proxied(request, held, Route.EMBEDDINGS, body)
            if proxied is not None:
                return proxied
            assert wanted is not None
            result = await self.inference.embed(task, held.model, wanted.texts)
            width = len(result.vectors[0])
            if wanted.dimensions is not None and wanted.dimensions != width:
                raise bad_request(
                    f"dimensions: this model's embeddings have {width} dimensions, not "
                    f"{wanted.dimensions}",
                    param="dimensions",
                )
            request[_RECORD].tokens(result.prompt_tokens, 0)
            model = bodies.model_field(body)
            return web.json_response(
                embeddings(model, result.vectors, result.prompt_tokens, wanted.encoding_format)
            )


__all__ = ["CLIENT_CLOSED", "ServingApp"]

"""Wire formats at the edges: each module translates one dialect to and from `app.canonical`.

Every dialect module (`openai_chat`, `anthropic_messages`, `openai_responses`, `ollama_chat`) offers the
same functions and classes, so the server and the providers can treat them alike:

Inbound (a client talks this dialect to Tiergate; used by `app.server`):
    parse_request(body: dict, headers: Mapping[str, str]) -> ChatRequest
        Raises app.errors.BadRequest with a message naming the field and what is expected.
        Fields a client may send to choose an upstream (api_base, base_url, api_key, headers…) are ignored.
    render_response(resp: ChatResponse, req: ChatRequest) -> dict
        The non-streaming response body; `model` is req.model (what the client asked for).
    StreamEncoder(req: ChatRequest, response_id: str)
        .encode(event: StreamEvent) -> bytes   # zero or more SSE frames for one canonical event
        .error(err: TiergateError) -> bytes    # the dialect's in-stream error, ending the stream
        .finish() -> bytes                      # trailer after MessageEnd (e.g. "data: [DONE]\n\n")
        Usage is only emitted to OpenAI clients that asked for it (req.include_usage).
    render_error(err: TiergateError) -> tuple[int, dict]
        HTTP status and the dialect's error body.

Outbound (Tiergate talks this dialect to an upstream; used by `app.providers`):
    build_request(req: ChatRequest, deployment: Deployment, *, stream: bool) -> dict
        The upstream body: model = deployment.model, fields the upstream does not know dropped or mapped,
        max_tokens clamped to deployment.max_output_tokens, usage requested on streams.
    parse_response(body: dict) -> ChatResponse
        Raises app.errors.UpstreamBadResponse when the body is not the documented shape.
    StreamDecoder()
        .feed(chunk: bytes) -> list[StreamEvent]  # any chunking of the byte stream works
        .close() -> list[StreamEvent]             # at end of stream; raises UpstreamBadResponse if the
                                                  # stream ended without its terminal event
        In-stream upstream errors raise the matching app.errors.UpstreamError subclass.
    parse_error(status: int, body: bytes) -> UpstreamError
        Maps an upstream error response to the typed hierarchy (429 -> UpstreamRateLimited, 5xx ->
        UpstreamServerError, other 4xx -> UpstreamClientError carrying the upstream's message).
"""

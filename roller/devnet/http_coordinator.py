"""Devnet coordinator for the HTTP + JWT generations H1..H4 (spec coordinator-http-protocol).

Serves ``GET /coordinator/v1/challenge``, ``POST /coordinator/v1/login``, ``/get_task`` and
``/submit_proof`` with the real envelopes (HTTP 200 for every envelope, ``404 page not
found`` as text for unknown paths), error codes and texts. Modelled era per generation:

- H1 = v4.1.33+ (one assigned task per key, 20003 replies to failure reports), no uuid
  (v4.1.1 baseline: submissions are found by (task_id, pk)), login RLP [name, version,
  challenge], signature recovered, not verified.
- H2 = v4.4.10+ (uuid, hard_fork_name in login and answers; chunk proofs NOT verified).
- H3 = v4.4.59+ (public_key verified, task_types, bundles, prover_height filter).
- H4 = 2025, as far as the spec covers it: the login adds prover_provider_type; a key that
  asks again while it holds a task gets that task again (same uuid) when the chosen type
  matches, else 20002; a key that failed a task does not get it again; task data carries
  fork_name. Universal task data is this prover's own shape (opaque to the client).
A failed or timed-out task goes back to the unassigned set at once (H2/H3 behaviour, used
for H1 too) until ``session_attempts`` is spent; then it fails.

Proofs round-trip as a real coordinator's ORM makes them (roller.devnet.proof_structs): a
submitted proof is decoded into the generation's Go struct (unknown members dropped, base64
as Go writes it) and stored re-encoded; batch and bundle tasks serve their sub-proofs from
that stored form. The verifier sees the stored form too, decoded by the generation's codec
(roller.protocol.http_proofs), which re-derives what the native verifier needs from the
instance bytes, as a real verifier reads its own struct. So an answer a real coordinator
would mangle is mangled here too.

Task ledger: the devnet's TaskBook/TaskRecord (types 0 chunk, 1 batch, 2 bundle), so the
control API and tests read the same ledger as for the WS devnet. State is touched only
through ``run`` (the devnet's event-loop serialiser; a lock when standalone); proof
verification runs outside it.

Failure model: gin's (roller.devnet.gin_server): a handler bug is HTTP 500, the server
keeps running; a restart invalidates every token.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar

from eth_utils import keccak

from roller.devnet import batch_data, proof_structs
from roller.devnet.gin_server import GinServer, Handler, Refusal, json_body
from roller.devnet.http_tables import CoordinatorTables, HttpCoordinatorConfig, ProverTask
from roller.devnet.tasksource import (
    AGGREGATOR,
    ASSIGNED,
    BASIC,
    BUNDLE,
    FAILED,
    UNASSIGNED,
    VERIFIED,
    TaskBook,
    TaskRecord,
)
from roller.devnet.verifier import Verifier
from roller.errors import GoDecodeError, GoSyntaxError, SignatureError, WireFormatError
from roller.protocol import signing
from roller.protocol.encoding import go_dumps
from roller.protocol.http_enums import Generation, ProofStatus, TaskType
from roller.protocol.http_errors import ErrCode
from roller.protocol.http_messages import GetTaskRequest, LoginRequest, SubmitProofRequest
from roller.protocol.http_proofs import decode_value, encode_value
from roller.protocol.messages import AggProof

log = logging.getLogger(__name__)

T = TypeVar("T")
_TO_HTTP = {BASIC: TaskType.CHUNK, AGGREGATOR: TaskType.BATCH, BUNDLE: TaskType.BUNDLE}
_FROM_HTTP = {v: k for k, v in _TO_HTTP.items()}


class HttpCoordinator(GinServer):
    """The coordinator's handlers over gin's plumbing (roller.devnet.gin_server)."""

    def __init__(
        self,
        book: TaskBook,
        verifier: Verifier,
        config: HttpCoordinatorConfig | None = None,
        *,
        run: Callable[[Callable[[], Any]], Any] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self.book = book
        self.verifier = verifier
        self.config = config or HttpCoordinatorConfig()
        self.gen = Generation(self.config.generation)
        self._lock = threading.Lock()
        self._run_fn = run
        self.rng = rng or random.Random()
        self.state = CoordinatorTables()

    def _run(self, fn: Callable[[], T]) -> T:
        if self._run_fn is not None:
            result: T = self._run_fn(fn)
            return result
        with self._lock:
            return fn()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        bound = super().start(host, port)
        log.info("http coordinator listening host=%s port=%d generation=%s", host, bound,
                 self.gen.value)
        return bound

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "challenge"): self._challenge,
            ("POST", "login"): self._login,
            ("POST", "get_task"): self._get_task,
            ("POST", "submit_proof"): self._submit_proof,
        }

    def _challenge(self, req: BaseHTTPRequestHandler, body: bytes, token: str | None) -> Any:
        random_b64 = base64.urlsafe_b64encode(os.urandom(32)).decode()  # padded (spec 2.1)
        return self._issue(self.config.challenge_ttl, {"random": random_b64})

    def _login(self, req: BaseHTTPRequestHandler, body: bytes, token: str | None) -> Any:
        self._jwt(token)  # the challenge middleware
        try:
            login = LoginRequest.from_json(json_body(body), generation=self.gen)
        except WireFormatError as exc:
            raise Refusal(ErrCode.JWT_COMMON,
                           f"missing the public_key, err:{exc}".lower()) from exc
        msg = login.message
        missing = [n for n in ("challenge", "prover_version", "prover_name")
                   if not getattr(msg, n)] + ([] if login.signature else ["signature"])
        if missing:
            raise Refusal(ErrCode.JWT_COMMON, (
                "missing the public_key, err:" + "\n".join(
                    f"key: 'loginparameter.message.{n}' error:field validation for '{n}' "
                    "failed on the 'required' tag" for n in missing)).lower())
        if token != msg.challenge:
            raise Refusal(ErrCode.JWT_COMMON,
                           "check challenge failure for the not equal challenge string")
        claims: dict[str, Any] = {"prover_name": msg.prover_name,
                                  "prover_version": msg.prover_version}
        if self.gen.rank >= 3:
            self._check_h3(login)
            claims["public_key"] = login.public_key
            claims["hard_fork_name"] = self.config.hard_fork_name
        else:
            try:
                # H1/H2 recover, never verify: a wrong layout gives some other key (spec 2.2).
                claims["public_key"] = login.recover_pk()
            except SignatureError:
                pass
            if self.gen == Generation.H2:
                claims["hard_fork_name"] = msg.hard_fork_name or "shanghai"

        def spend() -> None:
            if msg.challenge in self.state.used_challenges:
                raise Refusal(ErrCode.JWT_COMMON, (
                    "login insert challenge string failure:the challenge string:"
                    f"{msg.challenge} have been used").lower())
            self.state.used_challenges.add(msg.challenge)

        self._run(spend)
        log.info("prover login name=%s generation=%s pk=%s", msg.prover_name, self.gen.value,
                 str(claims.get("public_key", ""))[:10])
        return self._issue(self.config.login_ttl, claims)

    def _check_h3(self, login: LoginRequest) -> None:
        prefix = "check the login parameter failure: "
        try:
            ok = signing.recover_pk(login.message.hash(), login.signature) == login.public_key
        except SignatureError:
            ok = False
        if not ok:
            raise Refusal(ErrCode.JWT_COMMON, prefix + "auth message verify failure")
        msg = login.message
        # The keys of the verifier's circuits of the chain's forks (a mock verifier's:
        # `mock_vk`), as a coordinator's verifier assets give them.
        accepted = self.verifier.vks(self.config.forks)
        if msg.prover_types and any(vk not in accepted for vk in msg.vks):
            raise Refusal(ErrCode.JWT_COMMON, prefix + "incompatible vk. please check your "
                           "params files or config files")
        wanted = self.config.min_prover_version
        if wanted is not None and msg.prover_version.split("-", 1)[0] != wanted:
            raise Refusal(ErrCode.JWT_COMMON, "prover hard name failure:invalid prover "
                           f"prover_version:{msg.prover_version}".lower())

    # -- get_task -------------------------------------------------------------------------

    def _get_task(self, req: BaseHTTPRequestHandler, body: bytes, token: str | None) -> Any:
        claims = self._jwt(token)
        gen = self.gen
        invalid = "prover tasks parameter invalid, err:" if gen == Generation.H1 \
            else "prover task parameter invalid, err:"
        try:
            params = GetTaskRequest.from_json(json_body(body), generation=gen)
        except WireFormatError as exc:
            if exc.field == "prover_height" and exc.reason.startswith("required"):
                raise Refusal(ErrCode.PARAMETER_INVALID, invalid + (
                    "Key: 'GetTaskParameter.ProverHeight' Error:Field validation for "
                    "'ProverHeight' failed on the 'required' tag")) from exc
            raise Refusal(ErrCode.PARAMETER_INVALID, invalid + str(exc)) from exc
        pk = claims.get("public_key")
        if not isinstance(pk, str) or not pk:
            raise Refusal(ErrCode.GET_TASK_FAILURE, "return prover task err:check prover "
                           "task parameter failed, error:get public key from context failed")
        if gen.rank >= 3:
            types = list(params.task_types) or [1, 2, 3]
            if any(t not in (1, 2, 3) for t in types):
                bad = next(t for t in types if t not in (1, 2, 3))
                raise Refusal(ErrCode.PARAMETER_INVALID,
                               f"parameter wrong proof type:illegal proof type: {bad}")
        else:
            if params.task_type not in (0, 1, 2):
                raise Refusal(ErrCode.PARAMETER_INVALID, "parameter wrong proof type:"
                               f"illegal proof type: {params.task_type}")
            types = [params.task_type] if params.task_type else [1, 2]
        return self._run(lambda: self._dispatch(claims, pk, types, params.prover_height))

    def _dispatch(self, claims: dict[str, Any], pk: str, types: list[int],
                  height: int) -> dict[str, Any]:
        self._expire()
        st = self.state
        # H3+ shuffles and tries only the first type (spec 4.1, issue #1813).
        http_type = self.rng.choice(types)
        held = next((r for r in st.rows if r.pk == pk and r.status == "assigned"), None)
        if held is not None and self.gen == Generation.H4 and held.task_type == http_type:
            # H4 hands the key its assigned task again, same uuid (spec 4.1, after #1667).
            task_held = self._record(held.task_id)
            if task_held is not None:
                log.info("task re-delivered task_id=%s uuid=%s pk=%s", held.task_id,
                         held.uuid, pk[:10])
                return self._answer(held, task_held)
        if held is not None:
            raise Refusal(ErrCode.GET_TASK_FAILURE, (
                "return prover task err:check prover task parameter failed, error:prover "
                f"with publicKey {pk} is already assigned a task. ProverName: "
                f"{claims.get('prover_name')}, ProverVersion: {claims.get('prover_version')}"))
        ws_type = _FROM_HTTP[TaskType(http_type)]
        # H4: a key that failed a task recently does not get it again (spec 4.1, #1584).
        failed_here = {r.task_id for r in st.rows if r.pk == pk and r.status == "invalid"} \
            if self.gen == Generation.H4 else set()
        task = next((t for t in self.book.unassigned(ws_type)
                     if t.pinned_pk in (None, pk) and t.id not in failed_here
                     and (ws_type != BASIC or not t.block_numbers
                          or max(t.block_numbers) <= height)), None)
        if task is None:
            raise Refusal(ErrCode.EMPTY_PROOF_DATA, "get empty prover task")
        row = ProverTask(uuid=str(uuidlib.UUID(bytes=self.rng.randbytes(16), version=4)),
                         task_id=task.id, pk=pk,
                         prover_name=str(claims.get("prover_name", "")),
                         prover_version=str(claims.get("prover_version", "")),
                         task_type=http_type, assigned_at=self.clock())
        st.rows.append(row)
        task.state = ASSIGNED
        st.attempts[task.id] = st.attempts.get(task.id, 0) + 1
        task.dispatches.append({"pk": pk, "uuid": row.uuid, "at": row.assigned_at})
        log.info("task dispatched task_id=%s uuid=%s type=%s pk=%s", task.id, row.uuid,
                 http_type, pk[:10])
        return self._answer(row, task)

    def _answer(self, row: ProverTask, task: TaskRecord) -> dict[str, Any]:
        """The get_task data for a prover_task row."""
        out: dict[str, Any] = {}
        if self.gen != Generation.H1:
            out["uuid"] = row.uuid
        out.update(task_id=row.task_id, task_type=row.task_type,
                   task_data=self._task_data(task))
        if self.gen == Generation.H2:
            out["hard_fork_name"] = ""  # the single-circuit path (spec 4)
        elif self.gen.rank >= 3:
            out["hard_fork_name"] = task.fork  # the fork of its first block (spec 5.2)
        return out

    def _task_data(self, task: TaskRecord) -> str:
        # H4 adds the prover's fork spelling (spec 5.2-5.4). Its universal task data is
        # opaque to the client and handed to the prover library as it is: the devnet's is
        # the shape this prover library reads, the H3 one plus fork_name.
        fork = {"fork_name": task.fork.lower()} if self.gen == Generation.H4 else {}
        if task.type == BASIC:
            return go_dumps({**fork, "block_hashes": list(task.block_hashes)})
        sub_type = TaskType.BATCH if task.type == BUNDLE else TaskType.CHUNK
        proofs = [self._served(p, sub_type) for p in task.sub_proofs]
        if task.type == BUNDLE:
            return go_dumps({**fork, "batch_proofs": proofs})
        zero = "0x" + "00" * 32
        # The chunk's data hash (Scroll's chunk hash): the one its proof attests.
        infos = [{"chain_id": self.config.chain_id, "prev_state_root": zero,
                  "post_state_root": zero, "withdraw_root": zero,
                  "data_hash": "0x" + batch_data.served_data_hash(p).hex(),
                  "is_padding": False}
                 for p in task.sub_proofs]
        data: dict[str, Any] = {**fork, "chunk_infos": infos, "chunk_proofs": proofs}
        if self.gen.rank >= 3:
            # Codec v3/v4 (Darwin, DarwinV2): the batch's da-codec header and blob payload;
            # null for the other codecs (spec 5.3).
            header, blob = batch_data.served(task, self.book, self.config.traces,
                                             self.config.corrupt_batch_header_field,
                                             self.state.batches)
            data.update(batch_header=header, blob_bytes=blob)
        return go_dumps(data)

    def _served(self, proof: AggProof, task_type: int) -> Any:
        """A sub-proof as the coordinator serves it: the stored struct of the verified
        submission; a sub-proof seeded into the book directly goes through the struct too."""
        stored = self.state.stored.get(proof)
        if stored is None:
            value = encode_value(self.gen, task_type, "", proof)
            stored = proof_structs.encode(self.gen, task_type,
                                          proof_structs.decode(self.gen, task_type, value))
        return stored

    def _expire(self) -> None:
        """The timeout cron, run lazily before each dispatch and submission."""
        now = self.clock()
        for row in self.state.rows:
            if row.status == "assigned" and now - row.assigned_at > self.config.collection_time:
                log.info("prover task timed out uuid=%s task_id=%s", row.uuid, row.task_id)
                self._close(row, "invalid", failure_type=1)

    def _close(self, row: ProverTask, status: str, failure_type: int = 0) -> None:
        row.status, row.failure_type = status, failure_type
        task = self._record(row.task_id)
        if task is None or task.state != ASSIGNED:
            return
        if status == "valid":
            task.state = VERIFIED
        elif self.state.attempts.get(task.id, 0) >= self.config.session_attempts:
            task.state = FAILED
        else:
            task.state = UNASSIGNED  # handed out again at once (spec 4.1, R v4.4.x)

    def _record(self, task_id: str) -> TaskRecord | None:
        return self.book.get(task_id)

    # -- submit_proof ---------------------------------------------------------------------

    def _submit_proof(self, req: BaseHTTPRequestHandler, body: bytes, token: str | None) -> Any:
        claims = self._jwt(token)
        try:
            params = SubmitProofRequest.from_json(json_body(body), generation=self.gen)
        except WireFormatError as exc:
            if exc.field == "proof" and self.gen.rank < 3:
                kind = {1: "chunk", 2: "batch", 3: "bundle"}.get(_task_type_of(body), "chunk")
                raise Refusal(ErrCode.PARAMETER_INVALID,
                               f"unmarshal parameter {kind} proof invalid, err:{exc.reason}"
                               ) from exc
            if exc.field == "task_type" and exc.reason.startswith("required"):
                raise Refusal(ErrCode.PARAMETER_INVALID, (
                    "parameter invalid, err:Key: 'SubmitProofParameter.TaskType' Error:Field "
                    "validation for 'TaskType' failed on the 'required' tag")) from exc
            if exc.field != "proof":
                raise Refusal(ErrCode.PARAMETER_INVALID, f"parameter invalid, err:{exc}"
                               ) from exc
            params = None
        if params is not None and params.status == ProofStatus.OK and self.gen.rank < 3:
            # H1/H2: the controller unmarshals the proof into the struct before anything else.
            kind = {1: "chunk", 2: "batch", 3: "bundle"}.get(params.task_type, "chunk")
            try:
                self._stored_form(params.task_type, params.proof)
            except (GoDecodeError, GoSyntaxError) as exc:
                raise Refusal(ErrCode.PARAMETER_INVALID,
                               f"unmarshal parameter {kind} proof invalid, err:{exc}") from exc
        pk = claims.get("public_key")
        if not isinstance(pk, str) or not pk:
            raise Refusal(ErrCode.HANDLE_ZK_PROOF_FAILURE, "get public key from context failed")
        if params is None:  # H3: the raw Go JSON error, the row stays assigned (spec 6.3)
            raise Refusal(ErrCode.HANDLE_ZK_PROOF_FAILURE,
                           "handle zk proof failure, err:invalid character in proof JSON")
        row = self._run(lambda: self._find_row(params, pk))
        fail = "handle zk proof failure, err:"
        if row.status != "assigned":
            raise Refusal(ErrCode.HANDLE_ZK_PROOF_FAILURE,
                           fail + "validator failure prove task cannot submit proof twice")
        task = self._record(row.task_id)
        record = {"pk": pk, "uuid": row.uuid, "status": params.status,
                  "failure_type": params.failure_type, "error": params.failure_msg,
                  "at": self.clock()}
        if params.status != ProofStatus.OK:
            def report() -> None:
                self._close(row, "invalid", failure_type=2)
                if task is not None:
                    task.submissions.append({**record, "verdict": "failure report",
                                             "valid": None})

            self._run(report)
            raise Refusal(ErrCode.HANDLE_ZK_PROOF_FAILURE,
                           fail + "validator failure proof msg status not ok")
        if task is not None and task.state == VERIFIED:
            self._run(lambda: self._close(row, "invalid", failure_type=5))
            raise Refusal(ErrCode.HANDLE_ZK_PROOF_FAILURE,
                           fail + "validator failure chunk/batch have proved and verified success")
        try:
            stored = self._stored_form(row.task_type, params.proof)
        except (GoDecodeError, GoSyntaxError) as exc:
            # H3+: the raw Go JSON error; the row stays assigned until its timeout (spec 6.3).
            raise Refusal(ErrCode.HANDLE_ZK_PROOF_FAILURE, fail + str(exc)) from exc
        try:
            proof = decode_value(self.gen, row.task_type, stored)
        except WireFormatError as exc:  # decodes into the struct, but holds no usable proof
            proof = AggProof(b"", b"", b"", b"", 0)
            log.info("stored proof unreadable task_id=%s error=%s", row.task_id, exc)
        if self.config.verify_delay > 0:
            time.sleep(self.config.verify_delay)  # outside the state lock: others go on
        valid = self._verify(task, row.task_type, proof)

        def close() -> None:
            self._close(row, "valid" if valid else "invalid", 0 if valid else 3)
            if task is None:
                return
            task.submissions.append({**record, "verdict": "valid" if valid else "invalid",
                                     "valid": valid})
            if valid:
                task.proof = proof
                self.state.stored[proof] = stored
                self._on_verified(task)

        self._run(close)
        log.info("proof verified task_id=%s uuid=%s valid=%s", row.task_id, row.uuid, valid)
        if not valid:
            raise Refusal(ErrCode.HANDLE_ZK_PROOF_FAILURE,
                           fail + "verification succeeded, it's an invalid proof")
        return None

    def _stored_form(self, task_type: int, text: str) -> Any:
        """The proof text decoded into the generation's struct and re-encoded (GoDecodeError,
        GoSyntaxError when it does not decode)."""
        if task_type not in proof_structs.STRUCTS[self.gen]:
            raise GoDecodeError(f"parameter wrong proof type:illegal proof type: {task_type}")
        return proof_structs.round_trip(self.gen, task_type, text)

    def _find_row(self, params: SubmitProofRequest, pk: str) -> ProverTask:
        self._expire()
        for row in reversed(self.state.rows):
            if row.pk != pk:
                continue
            if (params.uuid and row.uuid == params.uuid) or (
                    not params.uuid and self.gen.rank < 3
                    and row.task_id == params.task_id
                    and (self.gen == Generation.H1 or row.task_type == params.task_type)):
                return row
        raise Refusal(ErrCode.HANDLE_ZK_PROOF_FAILURE, "handle zk proof failure, err:"
                       "validator failure get none prover task for the proof")

    def _verify(self, task: TaskRecord | None, task_type: int, proof: AggProof) -> bool:
        if self.gen == Generation.H2 and task_type == TaskType.CHUNK:
            return True  # v4.3.86..v4.4.36 verify no chunk proof at all (spec 6.2)
        if proof.proof == b"" and proof.final_pair == b"":
            return True  # `{}`: the mock verifier accepts any proof that unmarshals
        if task is None:
            return False  # no task to check the proof against (its row outlived the book)
        try:
            verdict = self.verifier.verify(task, proof)
        except Exception:  # the real coordinator says "verifier returns error"
            log.exception("verifier crashed")
            return False
        if not verdict.valid:
            log.info("proof invalid task_id=%s reason=%s", task.id, verdict.reason)
        return verdict.valid

    def _on_verified(self, task: TaskRecord) -> None:
        self.book.on_verified(task)
        if (self.gen.rank >= 3 and self.config.bundles and task.type == AGGREGATOR
                and task.id not in self.state.bundled and task.proof is not None):
            self.state.bundled.add(task.id)
            bundle_id = keccak(bytes.fromhex(task.id[2:]) * 2).hex()  # no 0x (spec 4)
            self.book.add(TaskRecord(id=bundle_id, type=BUNDLE, sub_proofs=(task.proof,),
                                     source="bundle", chain=task.chain,
                                     block_numbers=task.block_numbers, fork=task.fork))

    def info(self) -> dict[str, Any]:
        return {"generation": self.gen.value,
                "prover_tasks": [r.info() for r in self.state.rows],
                "used_challenges": len(self.state.used_challenges)}


def _task_type_of(body: bytes) -> int:
    try:
        value = json.loads(body).get("task_type")
        return value if isinstance(value, int) else 0
    except (ValueError, AttributeError):
        return 0

@0x82f10108f05ed14d;
# Wire protocol of the scaler engine. Every ZeroMQ message is one `Message` (this file) in the
# first frame, encoded as an unpacked Cap'n Proto single-segment-or-more message, optionally
# followed by payload frames whose meaning the message states. See PROTOCOL.md.

# Identifiers are opaque byte strings: task and object ids are 16 random bytes, peer ids are the
# ZeroMQ identities of DEALER sockets (ASCII, for readability in logs).

struct Capability {
  name @0 :Text;
  quantity @1 :Int64;        # -1: presence only; n >= 0: the task uses n units of it
}

struct ObjectInput {
  # A value a task needs that is not in its argument blob: a dependency's result in a graph, or an
  # object sent with Client.send_object. Either carried inline or kept in the object storage.
  objectId @0 :Data;
  inline @1 :Data;           # the pickled value when small
  stored @2 :Bool;           # true: fetch `objectId` from the object storage
}

struct Task {
  # One task, as a row: the logical record that TaskBatch carries column by column.
  taskId @0 :Data;
  clientId @1 :Data;         # owner: results go back to it, its objects are freed with it
  functionId @2 :Data;       # object id of the pickled callable (in the object storage)
  args @3 :Data;             # pickled (args, kwargs) when small
  argsStored @4 :Bool;       # true: the argument blob is the stored object `argsObjectId`
  argsObjectId @5 :Data;
  inputs @6 :List(ObjectInput);
  dependencies @7 :List(Data);   # graph tasks: ids of tasks whose results are inputs
  requested @8 :Bool;        # graph tasks: the client wants this result (always true for submit)
  priority @9 :Int32;        # higher runs first; tasks submitted from inside a task rank above their parent
  capabilities @10 :List(Capability);
  streamOutput @11 :Bool;
  graphId @12 :Data;         # empty for plain tasks
  retries @13 :Int32;        # scheduler -> worker: how many workers died running it so far
  dependentCount @14 :UInt32; # graph tasks: how many tasks of the same graph depend on this one; the
                              # scheduler keeps the result until that many dependents have finished
  notifyStart @15 :Bool;      # tell the client when a worker starts running it (TaskStarted)
  holdResult @16 :Bool;       # scheduler -> worker: keep this graph intermediate in the worker's memory
                              # (it has few dependents, each reading few inputs: they can run beside it)
}

struct GraphSubmit {
  # client -> scheduler, before any task of the graph: the graph's shape, so the scheduler holds it
  # as arrays. Node i's task id is graphId followed by i as 4 big-endian bytes; its payload comes
  # later as a TaskBatch row with that id and this graphId (its `dependencies` left empty).
  # Integer arrays travel as raw little-endian bytes (read without a per-element decode).
  graphId @0 :Data;            # 16 bytes
  nodeCount @1 :UInt32;
  dependencyOffsets @2 :Data;  # (nodeCount + 1) int64: node i depends on entries
                               # [offsets[i], offsets[i + 1]) of dependencyIndices
  dependencyIndices @3 :Data;  # int32 node indices; each lower than its dependent's own index
  priorities @4 :Data;         # nodeCount int32: higher runs first
  requested @5 :Data;          # nodeCount bytes: 1 = the client wants this node's result
}

struct TaskBatch {
  # A batch of tasks, stored by column so that thousands of tasks encode and decode in a few list
  # operations: entry i of every per-task list belongs to task i (see `Task` for each meaning).
  taskIds @0 :List(Data);
  clientIds @1 :List(Data);
  functionIds @2 :List(Data);
  args @3 :List(Data);                 # inline argument blob, or empty when stored
  argsObjectIds @4 :List(Data);        # empty, or the stored argument blob's object id
  priorities @5 :List(Int32);
  flags @6 :List(UInt8);               # bit 0: requested, bit 1: streamOutput, bit 2: notifyStart,
                                       # bit 3: holdResult
  retries @7 :List(Int32);
  dependentCounts @8 :List(UInt32);
  graphIds @9 :List(Data);
  # Per-task lists of variable length, flattened: task i owns entries
  # [xOffsets[i], xOffsets[i + 1]) of the x lists. An empty offsets list means none for any task.
  inputOffsets @10 :List(UInt32);
  inputObjectIds @11 :List(Data);
  inputInline @12 :List(Data);
  inputStored @13 :List(Bool);
  dependencyOffsets @14 :List(UInt32);
  dependencyIds @15 :List(Data);
  capabilityOffsets @16 :List(UInt32);
  capabilityNames @17 :List(Text);
  capabilityQuantities @18 :List(Int64);
}

enum TaskStatus {
  success @0;
  failed @1;                 # value: the pickled exception (with remote traceback)
  cancelled @2;
  workerDied @3;             # value: pickled error; the task exceeded its retry limit
  noWorker @4;               # value: pickled error; no worker can ever satisfy its capabilities
  timeout @5;
  schedulerError @6;         # value: pickled error raised by the scheduler (bad graph, ...)
  inputLost @7;              # worker -> scheduler only; value: the id of an input whose every copy is gone
}

struct Profiling {
  durationSeconds @0 :Float64;
  cpuSeconds @1 :Float64;
  peakMemoryBytes @2 :UInt64;
}

struct TaskResult {
  # One result, as a row: the logical record that ResultBatch carries column by column.
  taskId @0 :Data;
  status @1 :TaskStatus;
  value @2 :Data;            # inline pickled value when small
  stored @3 :Bool;           # true: the value is the stored object with id `taskId`
  profiling @4 :Profiling;
  size @5 :UInt64;           # a stored result's bytes (the scheduler places its dependents by them)
  held @6 :Bool;             # a stored result its worker holds in memory (ObjectPut{held}), not yet written
  delivered @7 :Bool;        # worker -> scheduler: its client has it already (sent to the client's inbox)
}

struct ResultBatch {
  # A batch of results by column: entry i of every list belongs to result i (see `TaskResult`).
  taskIds @0 :List(Data);
  statuses @1 :List(TaskStatus);
  values @2 :List(Data);
  stored @3 :List(Bool);
  durationSeconds @4 :List(Float64);
  cpuSeconds @5 :List(Float64);
  peakMemoryBytes @6 :List(UInt64);
  sizes @7 :List(UInt64);     # left out when no result of the batch is stored
  held @8 :List(Bool);        # left out when no result of the batch is held
  delivered @9 :List(Bool);   # left out when no result of the batch was delivered to its client directly
}

struct TaskStarted {
  # worker -> scheduler -> client: these tasks (sent with notifyStart) began running
  taskIds @0 :List(Data);
}

struct TaskCancel {
  taskIds @0 :List(Data);
  pendingOnly @1 :Bool;      # cancel only tasks that have not started; running ones complete
}

struct TaskLog {
  taskId @0 :Data;
  stream @1 :Text;           # "stdout" or "stderr"
  text @2 :Text;
}

struct TaskWarnings {
  # worker -> scheduler -> client: warnings the task raised, re-emitted in the caller
  taskId @0 :Data;
  graphId @1 :Data;          # the task's graph, empty outside graphs
  warnings @2 :Data;         # pickled list of (category, message, filename, lineno)
}

struct ClientHello {
  clientId @0 :Data;
  version @1 :UInt32;
  linkEpoch @2 :UInt32;  # opens the local link's epoch this number (local_link.py)
}

struct Welcome {
  # scheduler -> client or worker, answer to ClientHello / WorkerHello
  objectStorageAddress @0 :Text;
  schedulerAddress @1 :Text;
  heartbeatIntervalSeconds @2 :Float64;
  clientTimeoutSeconds @3 :Float64;  # a client silent this long is dropped: clients beat well within it
  resumable @4 :Bool;   # the scheduler keeps a journal: it may restart, and peers carry on with it
  epoch @5 :UInt64;     # counts the scheduler's starts on its journal (0 without one)
  inbox @6 :Data;       # the id of the scheduler's inbox on its host (empty: none); local_link.py
  linkEpoch @7 :UInt32; # opens the local link's epoch this number (local_link.py)
}

struct Reintroduce {
  # scheduler -> client or worker: this scheduler (re)started from its journal and does not know the
  # peer yet. A client says hello again and re-sends its unfinished tasks and graphs; a worker says
  # hello again, keeps its running task and drops the ones it had not started.
  epoch @0 :UInt64;
}

struct WorkerHello {
  workerId @0 :Data;
  hostname @1 :Text;
  pid @2 :UInt32;
  capabilities @3 :List(Capability);
  clusterId @4 :Data;
  version @5 :UInt32;
  linkEpoch @6 :UInt32;  # opens the local link's epoch this number (local_link.py)
}

struct Heartbeat {
  # client or worker -> scheduler; answered with HeartbeatEcho
  cpuPercent @0 :Float32;
  rssBytes @1 :UInt64;
  queuedTasks @2 :UInt32;
  blockedTasks @3 :UInt32;   # tasks waiting on their own nested tasks
  # from a cluster supervisor: what its host store holds; from a worker: the bytes of results it
  # holds in its memory (ObjectPut{held})
  objectMemoryBytes @4 :UInt64;
  objectDiskBytes @5 :UInt64;
  objectMemoryLimitBytes @6 :UInt64;
  # from a worker: its memory passed its pause threshold; it starts no new task (give it none, take
  # back what it queued) until a heartbeat says otherwise
  paused @7 :Bool;
  memoryLimitBytes @8 :UInt64;  # from a worker: its memory limit (0: none)
}

struct HeartbeatEcho {
  unused @0 :Bool;
}

struct WorkerBlocked {
  # worker -> scheduler: the number of its running tasks that are blocked waiting on children
  # changed; each blocked task frees one slot for other work
  blockedTasks @0 :UInt32;
}

struct ClientDisconnect {
  shutdownScheduler @0 :Bool;
}

struct ShutdownResponse {
  accepted @0 :Bool;
  reason @1 :Text;
}

struct WorkerDisconnect {
  # worker -> scheduler: the worker leaves; tasks it had not started are handed back
  returnedTasks @0 :List(Data);
  reason @1 :Text;
}

struct WorkerDied {
  # cluster -> scheduler: a worker process of this cluster exited without saying goodbye
  workerId @0 :Data;
  exitCode @1 :Int32;
}

struct SchedulerShutdown {
  # scheduler -> client, worker or cluster: stop. With `reconnect`, the scheduler no longer knows
  # the peer (it timed out); a worker process should be replaced, a client must be recreated.
  reason @0 :Text;
  reconnect @1 :Bool;
}

struct ObjectPut {
  # followed by the payload frames: frame 0 is the pickle stream, the rest its out-of-band buffers;
  # or, with `location` set, no frames: the object is a file of the host store at that location
  objectId @0 :Data;
  ownerId @1 :Data;
  location @2 :Text;   # a host store's "memory directory\nspill directory"; empty: the frames follow
  size @3 :UInt64;     # bytes of the object (with `location` or `held`)
  held @4 :Bool;       # no frames, no location: the object is in the sending worker's memory; the
                       # storage asks it (ObjectGet on the same link) to write it to its host store
                       # when a reader needs it, and tells it (ObjectDelete) when it is deleted
}

struct ObjectGet {
  objectIds @0 :List(Data);
}

struct ObjectData {
  # storage -> requester, one per requested id, followed by its payload frames when found
  objectId @0 :Data;
  found @1 :Bool;
  frameCount @2 :UInt32;
  location @3 :Text;   # found in a host store: read it from there (no frames follow)
}

struct ObjectDelete {
  objectIds @0 :List(Data);
}

struct ObjectDeleteOwner {
  ownerId @0 :Data;
}

struct WorkerStatus {
  workerId @0 :Data;
  hostname @1 :Text;
  pid @2 :UInt32;
  cpuPercent @3 :Float32;
  rssBytes @4 :UInt64;
  running @5 :UInt32;
  queued @6 :UInt32;
  sent @7 :UInt64;
  blocked @8 :UInt32;
  capabilities @9 :List(Capability);
  free @10 :UInt32;          # more tasks the scheduler would hand this worker right now
  heldBytes @11 :UInt64;     # results it holds in its memory, not yet written to its host store
  paused @12 :Bool;          # past its memory pause threshold: it gets no task (see Heartbeat.paused)
  memoryLimitBytes @13 :UInt64;  # its memory limit (0: none)
}

struct BalanceRequest {
  # scheduler -> worker: hand back these tasks if you have not started them (an idle worker waits)
  taskIds @0 :List(Data);
}

struct BalanceResponse {
  # worker -> scheduler: the requested tasks it gave up; it will not run them
  taskIds @0 :List(Data);
}

struct MessageCount {
  name @0 :Text;
  count @1 :UInt64;
}

struct MonitorStatus {
  # scheduler -> PUB monitor socket, once per status interval while anyone subscribes
  timestamp @0 :Float64;
  cpuPercent @1 :Float32;
  rssBytes @2 :UInt64;
  pending @3 :UInt64;
  running @4 :UInt64;
  succeeded @5 :UInt64;
  failed @6 :UInt64;
  cancelled @7 :UInt64;
  clients @8 :UInt32;
  workers @9 :List(WorkerStatus);
  sent @10 :List(MessageCount);
  received @11 :List(MessageCount);
  managers @12 :List(WorkerManagerStatus);
  hostStores @13 :List(HostStoreStatus);
}

# --- worker managers (appended: resource managers that start and stop groups of workers) ---------

struct WorkerManagerHello {
  # worker manager -> scheduler, its first message (again after the scheduler restarted): what one of
  # its worker groups offers. Answered with Welcome.
  managerId @0 :Data;        # its name (ASCII), unique per scheduler
  kind @1 :Text;             # "baremetal_native", "slurm", ...: for logs and the monitor
  workersPerGroup @2 :UInt32;
  capabilities @3 :List(Capability);  # what each worker of its groups offers
  maxGroups @4 :Int32;       # most groups at once; -1: no limit
  groups @5 :List(Data);     # groups it runs now (a reconnecting manager keeps its groups)
  version @6 :UInt32;
}

struct StartWorkerGroup {
  # scheduler -> worker manager: start one group; its workers report clusterId "K|" + groupId
  groupId @0 :Data;
}

struct StopWorkerGroup {
  # scheduler -> worker manager: stop this group (its workers are idle: the scheduler drained it)
  groupId @0 :Data;
}

struct WorkerGroupEvent {
  # worker manager -> scheduler: what became of a group
  groupId @0 :Data;
  event @1 :Text;            # "started": accepted (a batch job may still wait in its queue);
                             # "failed": it will not start; "ended": it is gone
  reason @2 :Text;           # why, in the resource manager's words (e.g. Slurm's state and reason)
  externalId @3 :Text;       # the resource manager's handle, e.g. a Slurm job id
}

struct WorkerGroupStatus {
  groupId @0 :Data;
  state @1 :Text;            # "pending" (asked for, no worker yet), "running", "draining", "stopping"
  workers @2 :UInt32;        # connected
  busyWorkers @3 :UInt32;    # connected and holding a task
  externalId @4 :Text;       # e.g. "Slurm job 42"
}

struct WorkerManagerStatus {
  managerId @0 :Data;
  kind @1 :Text;
  workersPerGroup @2 :UInt32;
  maxGroups @3 :Int32;       # -1: no limit
  groups @4 :List(WorkerGroupStatus);
}

struct HostStoreStatus {
  # one cluster's host store (large results kept where they were made), from its last heartbeat
  clusterId @0 :Data;
  hostname @1 :Text;
  memoryBytes @2 :UInt64;
  diskBytes @3 :UInt64;
  memoryLimitBytes @4 :UInt64;
}

struct Message {
  union {
    taskBatch @0 :TaskBatch;
    resultBatch @1 :ResultBatch;
    taskCancel @2 :TaskCancel;
    taskLog @3 :TaskLog;
    clientHello @4 :ClientHello;
    welcome @5 :Welcome;
    workerHello @6 :WorkerHello;
    heartbeat @7 :Heartbeat;
    heartbeatEcho @8 :HeartbeatEcho;
    workerBlocked @9 :WorkerBlocked;
    clientDisconnect @10 :ClientDisconnect;
    shutdownResponse @11 :ShutdownResponse;
    workerDisconnect @12 :WorkerDisconnect;
    workerDied @13 :WorkerDied;
    schedulerShutdown @14 :SchedulerShutdown;
    objectPut @15 :ObjectPut;
    objectGet @16 :ObjectGet;
    objectData @17 :ObjectData;
    objectDelete @18 :ObjectDelete;
    objectDeleteOwner @19 :ObjectDeleteOwner;
    monitorStatus @20 :MonitorStatus;
    balanceRequest @21 :BalanceRequest;
    balanceResponse @22 :BalanceResponse;
    taskStarted @23 :TaskStarted;
    graphSubmit @24 :GraphSubmit;
    taskWarnings @25 :TaskWarnings;
    workerManagerHello @26 :WorkerManagerHello;
    startWorkerGroup @27 :StartWorkerGroup;
    stopWorkerGroup @28 :StopWorkerGroup;
    workerGroupEvent @29 :WorkerGroupEvent;
    reintroduce @30 :Reintroduce;
  }
}

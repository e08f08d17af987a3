package featurestore.flink;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.runtime.state.OperatorStateCheckpointOutputStream;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StatePartitionStreamProvider;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.table.data.RowData;
import org.apache.flink.types.Row;

/**
 * The streaming job's online mini-batches (featurestore/engines/flink/job.py): rows {@code (k, v)} (the key
 * group and entity, one event's JSON array) are collected per {@code k}, in arrival order, and every
 * {@code batchMs} milliseconds of processing time (counted from the first row buffered) each key's events
 * leave as one row {@code (k, (k, UTF-8 bytes of "v1,v2,..."))}, keyed downstream by {@code k} for the Python
 * operator. Bytes, not a String: Flink's String serializer reads a batch char by char at the exchange before
 * the Python operator (15% of the job's JVM samples, bench/results/small-stream-bytes-*.md); a byte array is
 * copied whole, and reaches Python as {@code bytes}, which orjson parses as it is.
 *
 * <p>It replaces a processing-time TUMBLE window with {@code ARRAY_AGG}: that window kept every event text in a
 * list accumulator in keyed state, merged its buffer into it and serialized the whole list at every checkpoint
 * (a third of the job's JVM samples with 15 s windows and 2 s checkpoints). Here a key's events are appended to
 * one byte buffer; a checkpoint stores each buffer as one byte array in operator list state (a copy, no
 * per-event objects), so a restore emits what was buffered at the checkpoint and Kafka replays the rest:
 * exactly once, and at any parallelism (operator state is split among the subtasks). The buffers go to <em>raw</em>
 * operator state, written in bulk: managed operator state copied them into the checkpoint one byte at a time
 * (Flink's {@code CompressibleFSDataOutputStream} overrides only {@code write(int)}). A snapshot of the former
 * layout (managed list state {@code fs-online-batches}) is still read on restore. The end of a bounded
 * input emits everything at once; a buffer over {@link #MAX_BYTES} is emitted early, and so is everything once
 * no row arrived for {@code idleMs} (a catch-up run that has read its topic: its last batches reach Python at
 * once, not up to {@code batchMs} later).
 */
public class OnlineBatches extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<RowData, Row>, BoundedOneInput {
    private static final long serialVersionUID = 1L;
    static final long MAX_BYTES = 64L << 20;

    private final long batchMs;
    private final long idleMs;
    private transient LinkedHashMap<String, Buf> buffers;
    private transient long bytes;
    private transient boolean timerSet;
    private transient long deadline;  // when the buffered rows leave at the latest (first row + batchMs)
    private transient long lastArrival;
    private transient ListState<byte[]> state;

    /** One key's events: their JSON arrays joined with commas. */
    static final class Buf {
        byte[] data;
        int size;

        Buf(int capacity) {
            data = new byte[Math.max(64, capacity)];
        }

        void append(byte[] b, int off, int len, boolean comma) {
            int need = size + len + (comma ? 1 : 0);
            if (need > data.length) {
                data = Arrays.copyOf(data, Math.max(need, data.length * 2));
            }
            if (comma) {
                data[size++] = ',';
            }
            System.arraycopy(b, off, data, size, len);
            size += len;
        }
    }

    public OnlineBatches(long batchMs, long idleMs) {
        this.batchMs = Math.max(1L, batchMs);
        this.idleMs = Math.max(1L, idleMs);
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        buffers = new LinkedHashMap<>();
        bytes = 0;
        state = context.getOperatorStateStore().getListState(
                new ListStateDescriptor<>("fs-online-batches", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        if (context.isRestored()) {
            for (byte[] entry : state.get()) {  // the former layout: [key length][key UTF-8][events]
                int n = ByteBuffer.wrap(entry, 0, 4).getInt();
                String key = new String(entry, 4, n, StandardCharsets.UTF_8);
                add(key, entry, 4 + n, entry.length - 4 - n);
            }
            state.clear();
            for (StatePartitionStreamProvider partition : context.getRawOperatorStateInputs()) {
                try (InputStream in = partition.getStream()) {
                    readRaw(new DataInputStream(in));
                }
            }
        }
    }

    /** One raw state partition: its number of keys, then per key [key length][key UTF-8][size][events]. */
    private void readRaw(DataInputStream in) throws java.io.IOException {
        int keys = in.readInt();
        for (int i = 0; i < keys; i++) {
            byte[] key = new byte[in.readInt()];
            in.readFully(key);
            byte[] events = new byte[in.readInt()];
            in.readFully(events);
            add(new String(key, StandardCharsets.UTF_8), events, 0, events.length);
        }
    }

    @Override
    public void open() throws Exception {
        super.open();
        if (!buffers.isEmpty()) {
            schedule();
            deadline = lastArrival;  // restored rows arrived before the checkpoint: due at once
        }
    }

    @Override
    public void processElement(StreamRecord<RowData> element) throws Exception {
        RowData row = element.getValue();
        byte[] v = row.getString(1).toBytes();
        add(row.getString(0).toString(), v, 0, v.length);
        lastArrival = getProcessingTimeService().getCurrentProcessingTime();
        if (!timerSet) {
            schedule();
        }
        if (bytes > MAX_BYTES) {
            emitAll();
        }
    }

    private void add(String key, byte[] b, int off, int len) {
        Buf buf = buffers.get(key);
        if (buf == null) {
            buf = new Buf(len * 4);
            buffers.put(key, buf);
            buf.append(b, off, len, false);
        } else {
            buf.append(b, off, len, true);
        }
        bytes += len + 1;
    }

    private void schedule() {
        timerSet = true;
        long now = getProcessingTimeService().getCurrentProcessingTime();
        deadline = now + batchMs;
        lastArrival = now;
        getProcessingTimeService().registerTimer(Math.min(deadline, now + idleMs), this::onTimer);
    }

    /** Whether the buffered rows are due to leave: the batch's time is up, or no row arrived for idleMs. */
    private boolean due(long now) {
        return now >= deadline || now - lastArrival >= idleMs;
    }

    private void onTimer(long time) {
        long now = getProcessingTimeService().getCurrentProcessingTime();
        if (buffers.isEmpty() || due(now)) {
            timerSet = false;
            emitAll();
        } else {
            getProcessingTimeService().registerTimer(Math.min(deadline, lastArrival + idleMs), this::onTimer);
        }
    }

    private void emitAll() {
        for (Map.Entry<String, Buf> e : buffers.entrySet()) {
            Buf buf = e.getValue();
            String key = e.getKey();
            byte[] batch = buf.size == buf.data.length ? buf.data : Arrays.copyOf(buf.data, buf.size);
            output.collect(new StreamRecord<>(Row.of(key, Row.of(key, batch))));
        }
        buffers.clear();
        bytes = 0;
    }

    /**
     * Rows that are due leave before a checkpoint's barrier, even when the timer that would send them is late
     * (a busy task thread): so once a checkpoint triggered at time {@code t} completes, every row that arrived
     * before {@code t - batchMs} has reached the Python operator, and was applied there before it took the same
     * checkpoint. {@code StreamHandle.wait_online_flushed}
     * waits on exactly that, not on a time margin.
     */
    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId);
        if (!buffers.isEmpty() && due(getProcessingTimeService().getCurrentProcessingTime())) {
            emitAll();
        }
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        if (buffers.isEmpty()) {
            return;
        }
        // one partition per subtask (split among the subtasks on a restore at another parallelism, as list
        // state was); the stream is the checkpoint's own (not closed here), written array by array
        OperatorStateCheckpointOutputStream raw = context.getRawOperatorStateOutput();
        raw.startNewPartition();
        DataOutputStream out = new DataOutputStream(raw);
        out.writeInt(buffers.size());
        for (Map.Entry<String, Buf> e : buffers.entrySet()) {
            byte[] key = e.getKey().getBytes(StandardCharsets.UTF_8);
            Buf buf = e.getValue();
            out.writeInt(key.length);
            out.write(key);
            out.writeInt(buf.size);
            out.write(buf.data, 0, buf.size);
        }
        out.flush();
    }

    @Override
    public void endInput() {
        emitAll();
    }

    @Override
    public void finish() throws Exception {
        emitAll();
        super.finish();
    }
}

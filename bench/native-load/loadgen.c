/*
 * Native echo load generator for tlvkit benchmarks (Linux, epoll, one thread).
 *
 * A JavaScript generator saturates its own core before a fast server does, so
 * this one measures what the server costs: it keeps --window frames in flight
 * on each of --connections connections, checks every byte of every reply, and
 * reads the server's CPU time from /proc/PID/stat at the start and end of the
 * measured window.
 *
 * What it sends and expects comes from two files of frames written by
 * bench/native-load.ts (default layout: u16 id, u16 length, big-endian):
 * --requests holds K request frames, --replies the K replies they must get,
 * in the same order (for an echo both hold the same bytes). Each connection
 * cycles through them from its own starting frame and checks every received
 * byte against the reply stream, so any difference, reordering or loss is an
 * error.
 *
 *   cc -O2 -o loadgen bench/native-load/loadgen.c
 *   ./loadgen --port 10086 --requests req.bin --replies rep.bin --connections 16 \
 *             --window 16 --duration 5 --warmup 1 --pid 1234 --cpu 0
 *
 * Prints one JSON line on stdout: frames, bytes per direction, seconds,
 * errors, latency p50/p99 (µs), its own CPU seconds, and — with --pid — the
 * server's CPU µs per frame and peak RSS (KiB). Exit status 1 on any error.
 * bench/bench.ts compiles and runs it (`--generator native`).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADER_BYTES 4
#define READ_BUFFER (256 * 1024)
#define BUCKETS 64

/* K frames back to back, and where each starts (K + 1 entries: the last is the total). */
struct ring {
  uint8_t *bytes;
  uint64_t *starts;
  uint64_t frames;
};

struct flow {
  int fd;
  uint64_t first_frame;    /* this flow's stream starts at this frame of the rings */
  uint64_t sent_bytes;     /* request bytes handed to the kernel */
  uint64_t target_frames;  /* request frames we want sent */
  uint64_t received_bytes; /* reply bytes received and verified */
  uint64_t received_frames;
  double *send_times;      /* per frame in flight, indexed by frame number % window */
  int want_write;
};

static struct ring requests, replies;
static uint64_t errors;
static uint64_t latency_buckets[BUCKETS];
static int measuring;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double own_cpu_seconds(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
         (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
}

/* utime + stime of PID in clock ticks, or -1. */
static long long server_ticks(int pid) {
  char path[64], text[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *file = fopen(path, "r");
  if (!file) return -1;
  size_t length = fread(text, 1, sizeof text - 1, file);
  fclose(file);
  text[length] = 0;
  char *after = strrchr(text, ')');
  if (!after) return -1;
  /* fields after ") ": state(3) ... utime(14) stime(15) */
  long long utime = 0, stime = 0;
  char *cursor = after + 2;
  for (int field = 3; field < 14; field++) {
    cursor = strchr(cursor, ' ');
    if (!cursor) return -1;
    cursor++;
  }
  if (sscanf(cursor, "%lld %lld", &utime, &stime) != 2) return -1;
  return utime + stime;
}

static long server_peak_kib(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *file = fopen(path, "r");
  if (!file) return -1;
  long kib = -1;
  while (fgets(line, sizeof line, file)) {
    if (strncmp(line, "VmHWM:", 6) == 0) kib = strtol(line + 6, NULL, 10);
  }
  fclose(file);
  return kib;
}

/* Read a file of frames into `ring`; exits on a bad file. */
static void load_ring(const char *path, struct ring *ring) {
  FILE *file = fopen(path, "rb");
  if (!file) {
    fprintf(stderr, "loadgen: cannot open %s: %s\n", path, strerror(errno));
    exit(2);
  }
  fseek(file, 0, SEEK_END);
  long size = ftell(file);
  fseek(file, 0, SEEK_SET);
  ring->bytes = malloc((size_t)size + 1);
  if (size <= 0 || fread(ring->bytes, 1, (size_t)size, file) != (size_t)size) {
    fprintf(stderr, "loadgen: cannot read %s\n", path);
    exit(2);
  }
  fclose(file);
  uint64_t count = 0;
  for (uint64_t at = 0; at < (uint64_t)size;) {
    if (at + HEADER_BYTES > (uint64_t)size) break;
    at += HEADER_BYTES + (((uint64_t)ring->bytes[at + 2] << 8) | ring->bytes[at + 3]);
    count++;
  }
  ring->starts = malloc((count + 1) * sizeof(uint64_t));
  uint64_t at = 0;
  for (uint64_t frame = 0; frame < count; frame++) {
    ring->starts[frame] = at;
    at += HEADER_BYTES + (((uint64_t)ring->bytes[at + 2] << 8) | ring->bytes[at + 3]);
  }
  if (count == 0 || at != (uint64_t)size) {
    fprintf(stderr, "loadgen: %s is not a whole number of frames\n", path);
    exit(2);
  }
  ring->starts[count] = at;
  ring->frames = count;
}

/* Position of frame `n` in the endless stream that cycles through `ring`. */
static uint64_t stream_position(const struct ring *ring, uint64_t n) {
  return (n / ring->frames) * ring->starts[ring->frames] + ring->starts[n % ring->frames];
}

static void record_latency(double seconds) {
  if (!measuring) return;
  double micros = seconds * 1e6;
  int bucket = 0;
  /* 4 buckets per octave from 1 µs */
  while (bucket < BUCKETS - 1 && micros >= 1.0) {
    micros /= 1.189207115; /* 2^(1/4) */
    bucket++;
  }
  latency_buckets[bucket]++;
}

static double latency_percentile(double fraction) {
  uint64_t total = 0;
  for (int i = 0; i < BUCKETS; i++) total += latency_buckets[i];
  if (total == 0) return 0;
  uint64_t rank = (uint64_t)(fraction * (double)total), seen = 0;
  for (int i = 0; i < BUCKETS; i++) {
    seen += latency_buckets[i];
    if (seen > rank) {
      double upper = 1.0;
      for (int j = 0; j < i; j++) upper *= 1.189207115;
      return upper;
    }
  }
  return 0;
}

/* Write as much of the flow's target as the kernel takes. Returns 0, or -1 on a socket error. */
static int pump(struct flow *flow) {
  uint64_t ring_bytes = requests.starts[requests.frames];
  uint64_t base = stream_position(&requests, flow->first_frame);
  uint64_t target = stream_position(&requests, flow->first_frame + flow->target_frames) - base;
  while (flow->sent_bytes < target) {
    uint64_t position = (base + flow->sent_bytes) % ring_bytes;
    uint64_t length = target - flow->sent_bytes;
    if (length > ring_bytes - position) length = ring_bytes - position;
    ssize_t written = send(flow->fd, requests.bytes + position, length, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        flow->want_write = 1;
        return 0;
      }
      return -1;
    }
    flow->sent_bytes += (uint64_t)written;
  }
  flow->want_write = 0;
  return 0;
}

/* Ask for `count` more request frames, stamping their send time. */
static void request_more(struct flow *flow, uint64_t count, int window, double now) {
  for (uint64_t i = 0; i < count; i++) flow->send_times[(flow->target_frames + i) % (uint64_t)window] = now;
  flow->target_frames += count;
}

/* Check received bytes against the reply stream. Returns the number of whole replies newly completed, or -1 on a mismatch. */
static long long verify(struct flow *flow, const uint8_t *data, size_t length, int window, double now) {
  uint64_t ring_bytes = replies.starts[replies.frames];
  uint64_t base = stream_position(&replies, flow->first_frame);
  size_t checked = 0;
  while (checked < length) {
    uint64_t position = (base + flow->received_bytes) % ring_bytes;
    size_t run = length - checked;
    if (run > ring_bytes - position) run = (size_t)(ring_bytes - position);
    if (memcmp(replies.bytes + position, data + checked, run) != 0) return -1;
    flow->received_bytes += run;
    checked += run;
  }
  long long completed = 0;
  while (stream_position(&replies, flow->first_frame + flow->received_frames + 1) - base <= flow->received_bytes) {
    if (flow->received_frames >= flow->target_frames) return -1; /* a reply to nothing sent */
    record_latency(now - flow->send_times[flow->received_frames % (uint64_t)window]);
    flow->received_frames++;
    completed++;
  }
  return completed;
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P --requests FILE --replies FILE [--host 127.0.0.1] [--connections 16]\n"
          "               [--window 16] [--duration 5] [--warmup 1] [--pid SERVER_PID] [--cpu N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *requests_path = NULL, *replies_path = NULL;
  int port = 0, connections = 16, window = 16, pid = 0, cpu = -1;
  double duration = 5, warmup = 1;
  for (int i = 1; i < argc; i++) {
    const char *name = argv[i];
    if (i + 1 >= argc) usage();
    const char *value = argv[++i];
    if (strcmp(name, "--host") == 0) host = value;
    else if (strcmp(name, "--port") == 0) port = atoi(value);
    else if (strcmp(name, "--connections") == 0) connections = atoi(value);
    else if (strcmp(name, "--window") == 0) window = atoi(value);
    else if (strcmp(name, "--requests") == 0) requests_path = value;
    else if (strcmp(name, "--replies") == 0) replies_path = value;
    else if (strcmp(name, "--duration") == 0) duration = atof(value);
    else if (strcmp(name, "--warmup") == 0) warmup = atof(value);
    else if (strcmp(name, "--pid") == 0) pid = atoi(value);
    else if (strcmp(name, "--cpu") == 0) cpu = atoi(value);
    else usage();
  }
  if (port <= 0 || port > 65535 || connections < 1 || window < 1 || duration <= 0 || !requests_path || !replies_path) usage();
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  load_ring(requests_path, &requests);
  load_ring(replies_path, &replies);
  if (requests.frames != replies.frames) {
    fprintf(stderr, "loadgen: %llu requests but %llu replies\n", (unsigned long long)requests.frames,
            (unsigned long long)replies.frames);
    return 2;
  }

  struct sockaddr_in address = {0};
  address.sin_family = AF_INET;
  address.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &address.sin_addr) != 1) {
    fprintf(stderr, "loadgen: bad host %s\n", host);
    return 2;
  }
  int poller = epoll_create1(0);
  struct flow *flows = calloc((size_t)connections, sizeof *flows);
  for (int c = 0; c < connections; c++) {
    struct flow *flow = &flows[c];
    flow->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(flow->fd, (struct sockaddr *)&address, sizeof address) != 0) {
      fprintf(stderr, "loadgen: cannot connect to %s:%d: %s\n", host, port, strerror(errno));
      return 1;
    }
    int one = 1;
    setsockopt(flow->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(flow->fd, F_SETFL, fcntl(flow->fd, F_GETFL) | O_NONBLOCK);
    flow->first_frame = (uint64_t)c * 17 % requests.frames;
    flow->send_times = calloc((size_t)window, sizeof(double));
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)c};
    epoll_ctl(poller, EPOLL_CTL_ADD, flow->fd, &event);
  }

  double started = now_seconds();
  for (int c = 0; c < connections; c++) {
    request_more(&flows[c], (uint64_t)window, window, started);
    if (pump(&flows[c]) != 0) errors++;
  }

  uint8_t *buffer = malloc(READ_BUFFER);
  struct epoll_event events[256];
  double window_start = started + warmup, window_end = window_start + duration;
  long long ticks_start = -1, ticks_end = -1;
  double cpu_start = 0, cpu_end = 0, measured_start = 0, measured_end = 0;
  uint64_t frames = 0, bytes_in = 0, bytes_out = 0;
  int phase = 0; /* 0 warmup, 1 measuring, 2 done */
  while (phase < 2 && errors == 0) {
    int ready = epoll_wait(poller, events, 256, 100);
    double now = now_seconds();
    if (phase == 0 && now >= window_start) {
      phase = 1;
      measuring = 1;
      measured_start = now;
      cpu_start = own_cpu_seconds();
      if (pid) ticks_start = server_ticks(pid);
    } else if (phase == 1 && now >= window_end) {
      measured_end = now;
      cpu_end = own_cpu_seconds();
      if (pid) ticks_end = server_ticks(pid);
      phase = 2;
      break;
    }
    for (int e = 0; e < ready; e++) {
      struct flow *flow = &flows[events[e].data.u32];
      if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        ssize_t got = recv(flow->fd, buffer, READ_BUFFER, 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          fprintf(stderr, "loadgen: connection %u closed by the server\n", events[e].data.u32);
          errors++;
          break;
        }
        if (got > 0) {
          long long completed = verify(flow, buffer, (size_t)got, window, now);
          if (completed < 0) {
            fprintf(stderr, "loadgen: connection %u: reply differs from the request at byte %llu\n",
                    events[e].data.u32, (unsigned long long)flow->received_bytes);
            errors++;
            break;
          }
          if (phase == 1) {
            uint64_t last = flow->first_frame + flow->received_frames;
            frames += (uint64_t)completed;
            bytes_in += stream_position(&replies, last) - stream_position(&replies, last - (uint64_t)completed);
            bytes_out += stream_position(&requests, last) - stream_position(&requests, last - (uint64_t)completed);
          }
          request_more(flow, (uint64_t)completed, window, now);
        }
      }
      int had_backlog = flow->want_write;
      if (pump(flow) != 0) {
        errors++;
        break;
      }
      if (had_backlog != flow->want_write) {
        struct epoll_event event = {.events = EPOLLIN | (flow->want_write ? EPOLLOUT : 0), .data.u32 = events[e].data.u32};
        epoll_ctl(poller, EPOLL_CTL_MOD, flow->fd, &event);
      }
    }
  }
  for (int c = 0; c < connections; c++) close(flows[c].fd);

  double seconds = measured_end - measured_start;
  if (seconds <= 0) seconds = 1e-9;
  long ticks_per_second = sysconf(_SC_CLK_TCK);
  printf("{\"frames\":%llu,\"seconds\":%.6f,\"framesPerSecond\":%.1f,\"megabytesPerSecondIn\":%.3f,"
         "\"megabytesPerSecondOut\":%.3f,\"errors\":%llu,\"p50Micros\":%.1f,\"p99Micros\":%.1f,\"generatorCpu\":%.4f",
         (unsigned long long)frames, seconds, (double)frames / seconds, (double)bytes_in / seconds / 1e6,
         (double)bytes_out / seconds / 1e6, (unsigned long long)errors,
         latency_percentile(0.5), latency_percentile(0.99), (cpu_end - cpu_start) / seconds);
  if (pid && ticks_start >= 0 && ticks_end >= 0 && frames > 0) {
    double server_seconds = (double)(ticks_end - ticks_start) / (double)ticks_per_second;
    printf(",\"serverCpuMicrosPerFrame\":%.4f,\"serverCpu\":%.4f,\"serverTicks\":%lld,\"ticksPerSecond\":%ld,"
           "\"serverPeakKiB\":%ld",
           server_seconds * 1e6 / (double)frames, server_seconds / seconds, ticks_end - ticks_start, ticks_per_second,
           server_peak_kib(pid));
  }
  printf("}\n");
  return errors == 0 ? 0 : 1;
}

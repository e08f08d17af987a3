import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

/**
 * Kafka health probe used by infra/kafka.sh: a real metadata round trip with the Kafka Admin client.
 *
 * <p>Usage: java -cp 'infra/.cache/tools:infra/.cache/kafka-libs/*' KafkaHealth BOOTSTRAP [TIMEOUT_MS]
 *
 * <p>Exit 0 and prints "ok brokers=N controller=ID topics=N" when the cluster answers describeCluster
 * and listTopics; exit 1 with a one-line reason otherwise.
 */
public final class KafkaHealth {
  public static void main(String[] args) {
    if (args.length < 1) {
      System.err.println("usage: KafkaHealth BOOTSTRAP [TIMEOUT_MS]");
      System.exit(2);
    }
    int timeoutMs = args.length > 1 ? Integer.parseInt(args[1]) : 5000;
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
    props.put(AdminClientConfig.RETRIES_CONFIG, 0);
    props.put(AdminClientConfig.CLIENT_ID_CONFIG, "featurestore-infra-health");
    try (Admin admin = Admin.create(props)) {
      DescribeClusterResult cluster = admin.describeCluster();
      int brokers = cluster.nodes().get(timeoutMs, TimeUnit.MILLISECONDS).size();
      int controller = cluster.controller().get(timeoutMs, TimeUnit.MILLISECONDS).id();
      int topics = admin.listTopics().names().get(timeoutMs, TimeUnit.MILLISECONDS).size();
      if (brokers < 1) {
        System.out.println("not ready: no brokers in metadata");
        System.exit(1);
      }
      System.out.println("ok brokers=" + brokers + " controller=" + controller + " topics=" + topics);
    } catch (Exception e) {
      Throwable root = e;
      while (root.getCause() != null) {
        root = root.getCause();
      }
      System.out.println("not ready: " + root.getClass().getSimpleName() + ": " + root.getMessage());
      System.exit(1);
    }
  }
}

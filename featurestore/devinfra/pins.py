"""The exact Flink connector jars the jobs load: (group, artifact, version, classifier, sha256, bytes).
They are what infra/pom-flink.xml and infra/pom-hadoop.xml resolve to (tests/test_devinfra.py checks the
pins against the jars infra/setup.sh fetched); change both together."""

PINS = {
    'flink': (
        ('org.apache.flink', 'flink-sql-connector-kafka', '5.0.0-2.2', '',
         '5605c691d11a501382c383fecba37a7a552467da5ab7ba904ef5d6f3d62c5616', 10666527),
        ('org.apache.flink', 'flink-sql-parquet', '2.3.0', '',
         'f30617f4a5a6d437750f155ff72178ab34439aec91df64d96621c260559ba5fd', 8787755),
        ('org.apache.hadoop', 'hadoop-client-api', '3.4.2', '',
         '607c0299f4df33013bd0a0f37c8cf255c635bbaddd247b8fec68c210cc17d19f', 19665963),
        ('org.apache.hadoop', 'hadoop-client-runtime', '3.4.2', '',
         '18d071c7f72f8a946677b398a57af9c7afa2dd41a81023c310f99373fec200b3', 30502934),
    ),
}

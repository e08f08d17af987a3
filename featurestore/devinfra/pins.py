"""The exact Flink connector jars the jobs load: (group, artifact, version, classifier, sha256, bytes).
They are what infra/pom-flink.xml, infra/pom-avro.xml and infra/pom-hadoop.xml resolve to (tests/test_devinfra.py checks the
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
        # Avro stream faces (ParseAvroRecord): Avro parses writer schemas with plain (unshaded) Jackson, which
        # no other jar of the job carries; the versions Avro 1.12.2 itself depends on.
        ('org.apache.avro', 'avro', '1.12.2', '',
         '6522e2a146b859ad158bb024dcc3b0bc826680794a2523b0881dafcbd59ce2df', 733218),
        ('com.fasterxml.jackson.core', 'jackson-core', '2.22.1', '',
         '941ff029bcdb93e83d209ce516c1a7fb8bbac07d0a2fa122f5bf194b2cd7b4f4', 594171),
        ('com.fasterxml.jackson.core', 'jackson-databind', '2.22.1', '',
         '7dcd7e53bec1f56c7ad278bd1ca0840bebcc595d61ce44d6a8439abb75b965b2', 1706404),
        ('com.fasterxml.jackson.core', 'jackson-annotations', '2.22', '',
         '21ddb598807d3a51a876704eb979d9296e1c6a6f47ab1826ff88c6d6a127a2d0', 84211),
    ),
}

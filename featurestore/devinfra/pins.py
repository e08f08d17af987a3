"""The exact Java artifacts the package fetches (featurestore/devinfra/jars.py): (group, artifact, version,
classifier, sha256, bytes).

``flink``: the connector jars the Flink jobs load; what infra/pom-flink.xml and infra/pom-hadoop.xml resolve
to (tests/test_devinfra.py checks the pins against the jars infra/setup.sh fetched): change both together.
"""

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
        ('com.github.luben', 'zstd-jni', '1.5.6-6', '',
         '1f85db623bf653860d10e13e7b1ca6609301f66994dc93784c92a66019516bb9', 7325504),
        ('io.airlift', 'aircompressor', '2.0.2', '',
         '0c2a96bf86d5fb24ff7f20c92483c61391cb10d440a4bd278c77365a2b165698', 254191),
    ),
}

"""The EC2 flow through boto3, as a user would script it: the endpoint,
region and keys come from the rc file creds:create wrote (its variables are
in the environment). Prints one JSON object of what it saw."""
import base64
import json
import os
import sys
import time

import boto3
from botocore.exceptions import ClientError

ec2 = boto3.client("ec2", endpoint_url=os.environ["EC2_URL"])
seen = {"boto3": boto3.__version__}


def wait(ids, state, limit=90):
    deadline = time.time() + limit
    while True:
        r = ec2.describe_instances(InstanceIds=ids)
        states = [i["State"]["Name"] for res in r["Reservations"] for i in res["Instances"]]
        if all(s == state for s in states):
            return r
        if time.time() > deadline:
            raise SystemExit("instances %s not %s within %ds: %s" % (ids, state, limit, states))
        time.sleep(0.5)


pub = open(sys.argv[1], "rb").read()
seen["import"] = ec2.import_key_pair(KeyName="laptop", PublicKeyMaterial=pub)["KeyFingerprint"]
run = ec2.run_instances(ImageId="ami-local", InstanceType="t2.small", MinCount=1, MaxCount=1, KeyName="laptop",
                        UserData="#!/bin/sh\necho hello from user-data\n")
ids = [i["InstanceId"] for i in run["Instances"]]
seen["run"] = [i["State"]["Name"] for i in run["Instances"]]
r = wait(ids, "running")
seen["address"] = r["Reservations"][0]["Instances"][0].get("PrivateIpAddress", "")
ec2.create_tags(Resources=ids, Tags=[{"Key": "owner", "Value": "ci"}])
seen["tags"] = [(t["ResourceId"], t["Key"], t["Value"]) for t in ec2.describe_tags()["Tags"]]
seen["console"] = len(ec2.get_console_output(InstanceId=ids[0]).get("Output", ""))
seen["stop"] = [c["CurrentState"]["Name"] for c in ec2.stop_instances(InstanceIds=ids)["StoppingInstances"]]
wait(ids, "stopped", 30)
seen["start"] = [c["CurrentState"]["Name"] for c in ec2.start_instances(InstanceIds=ids)["StartingInstances"]]
wait(ids, "running")
ec2.reboot_instances(InstanceIds=ids)
wait(ids, "running")
seen["images"] = [i["ImageId"] for i in ec2.describe_images()["Images"]]
seen["types"] = sorted(t["InstanceType"] for t in ec2.describe_instance_types()["InstanceTypes"])
try:
    ec2.describe_instances(InstanceIds=["i-00000000000000000"])
except ClientError as e:
    seen["unknown"] = e.response["Error"]["Code"]
seen["terminate"] = [c["CurrentState"]["Name"] for c in ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]]
seen["ids"] = ids
print(json.dumps(seen))
